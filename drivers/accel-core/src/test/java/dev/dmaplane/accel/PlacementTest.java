package dev.dmaplane.accel;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.fence.Reservation;
import dev.dmaplane.fence.ResvFence;
import dev.dmaplane.fence.ResvUsage;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.EnumSet;
import java.util.List;

import static dev.dmaplane.accel.AccelRig.MIB;
import static dev.dmaplane.accel.BufferObjectTest.errno;
import static dev.dmaplane.accel.BufferObjectTest.pattern;
import static dev.dmaplane.accel.BufferObjectTest.read;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * TTM placement ({@code drivers/gpu/drm/ttm/ttm_bo.c}: LRU eviction, pinning, {@code ttm_bo_validate};
 * {@code ttm_bo_util.c}: {@code ttm_bo_move_accel_cleanup} frees the old backing when the move fence signals;
 * {@code ttm_bo_vm.c}: a CPU fault on VRAM the CPU cannot see moves the object first).
 */
class PlacementTest {
    private static final EnumSet<Placement> VRAM_ONLY = EnumSet.of(Placement.VRAM);

    private final AccelRig rig = new AccelRig();

    @AfterEach
    void tearDown() throws InterruptedException {
        rig.close();
    }

    @Test
    void pressureFromAnotherContextEvictsToHostAndUseBringsItBack() {
        try (AccelContext a = rig.device.open(); AccelContext b = rig.device.open()) {
            int h = a.createBo(MIB);
            byte[] data = pattern((int) MIB, 3);
            a.write(h, 0, MemorySegment.ofArray(data));
            assertEquals(Placement.VISIBLE_VRAM, a.info(h).placement(), "the CPU write moved it into the window");
            for (int i = 0; i < 6; i++) {
                b.createBo(MIB, Placement.VRAM, VRAM_ONLY);
            }
            assertEquals(Placement.HOST, a.info(h).placement(), "least recently used: evicted");
            assertEquals("1024 KiB", a.fdinfo().get("drm-total-system"));
            assertArrayEquals(data, read(a, h, 0, (int) MIB));
            b.closeBo(1);
            a.validate(h);
            assertTrue(a.info(h).placement() != Placement.HOST, "validate brings it back to VRAM");
            assertArrayEquals(data, read(a, h, 0, (int) MIB));
        }
        assertEquals(AccelRig.VRAM, rig.vramAvailableWhenIdle());
    }

    @Test
    void nothingEvictableIsEnomemAndChangesNothing() {
        try (AccelContext a = rig.device.open()) {
            int big = a.createBo(4 * MIB, Placement.VRAM, VRAM_ONLY);
            int window = a.createBo(2 * MIB);
            a.pin(big);
            a.pin(window);
            long frames = rig.machine.memory().allocatedFrames();
            assertEquals(Errno.ENOMEM, errno(() -> a.createBo(4096, Placement.VRAM, VRAM_ONLY)));
            assertEquals(0, rig.vramAvailableWhenIdle());
            assertEquals(frames, rig.machine.memory().allocatedFrames());
            assertEquals("6144 KiB", a.fdinfo().get("drm-total-vram"));
            int host = a.createBo(4096);
            assertEquals(Placement.HOST, a.info(host).placement(), "an object allowed in host memory falls back there");
            a.unpin(window);
            int again = a.createBo(4096, Placement.VRAM, VRAM_ONLY);
            assertEquals(Placement.HOST, a.info(window).placement(), "unpinned: evicted for the new object");
            assertEquals(Placement.VISIBLE_VRAM, a.info(again).placement());
        }
    }

    @Test
    void moveFenceIsKernelUsageAndOldBackingIsFreedOnlyWhenItSignals() {
        try (AccelContext a = rig.device.open()) {
            int big = a.createBo(4 * MIB, Placement.VRAM, VRAM_ONLY);
            int window = a.createBo(2 * MIB, Placement.VRAM, VRAM_ONLY);
            a.pin(big);
            a.pin(window);
            int h = a.createBo(64 * 1024);
            assertEquals(Placement.HOST, a.info(h).placement());
            byte[] data = pattern(64 * 1024, 9);
            a.write(h, 0, MemorySegment.ofArray(data));
            a.unpin(big);
            a.closeBo(big);
            long frames = rig.machine.memory().allocatedFrames();
            int mappings = rig.machine.activeDmaMappings();

            rig.gpu.hold();
            a.validate(h);
            List<ResvFence> entries = a.reservation(h).entries();
            ResvFence move = entries.getLast();
            assertEquals(ResvUsage.KERNEL, move.usage());
            assertFalse(move.fence().isSignaled());
            assertEquals(Placement.VRAM, a.info(h).placement(), "points at its new backing at once");
            assertEquals(frames, rig.machine.memory().allocatedFrames(), "host pages kept while the copy is pending");
            assertEquals(mappings, rig.machine.activeDmaMappings(), "and still mapped for the GPU");

            rig.gpu.release();
            Fence f = move.fence();
            assertTrue(f.await(Duration.ofSeconds(10)));
            a.info(h);
            assertEquals(frames - 16, rig.machine.memory().allocatedFrames(), "16 host pages freed after the signal");
            assertEquals(mappings - 1, rig.machine.activeDmaMappings());
            assertArrayEquals(data, read(a, h, 0, 64 * 1024));
        }
    }

    @Test
    void aMoveIsOrderedAfterEveryFenceOfTheObject() {
        try (AccelContext a = rig.device.open()) {
            int big = a.createBo(4 * MIB, Placement.VRAM, VRAM_ONLY);
            int window = a.createBo(2 * MIB, Placement.VRAM, VRAM_ONLY);
            a.pin(big);
            a.pin(window);
            int h = a.createBo(64 * 1024);
            byte[] data = pattern(64 * 1024, 4);
            a.write(h, 0, MemorySegment.ofArray(data));
            a.unpin(big);
            a.closeBo(big);
            Fence job = FenceContext.allocate("test", "job").createFence();
            Reservation resv = a.reservation(h);
            resv.lock();
            try {
                resv.reserveFences(1);
                resv.addFence(job, ResvUsage.BOOKKEEP);
            } finally {
                resv.unlock();
            }

            a.validate(h);
            assertEquals(List.of(job), rig.provider.lastMove.dependencies(), "the copy waits for the job");
            Fence move = resv.fences(ResvUsage.KERNEL).getFirst();
            job.signal();
            assertTrue(move.await(Duration.ofSeconds(10)));
            assertArrayEquals(data, read(a, h, 0, data.length));
        }
    }

    @Test
    void cpuAccessToInvisibleVramMovesItToTheWindowOrToHost() {
        try (AccelContext a = rig.device.open()) {
            int h = a.createBo(8192);
            assertEquals(Placement.VRAM, a.info(h).placement(), "beyond the window first");
            int moves = rig.provider.moves.get();
            assertArrayEquals(new byte[8192], read(a, h, 0, 8192));
            assertEquals(Placement.VISIBLE_VRAM, a.info(h).placement());
            assertEquals(moves + 1, rig.provider.moves.get());

            int window = a.createBo(2 * MIB, Placement.VISIBLE_VRAM, EnumSet.of(Placement.VISIBLE_VRAM));
            assertEquals(Placement.VISIBLE_VRAM, a.info(window).placement(), "the first object was evicted");
            a.pin(window);
            int g = a.createBo(8192);
            byte[] data = pattern(8192, 1);
            a.write(g, 0, MemorySegment.ofArray(data));
            assertEquals(Placement.HOST, a.info(g).placement(), "window pinned full: host memory");
            assertArrayEquals(data, read(a, g, 0, 8192));

            int stuck = a.createBo(8192, Placement.VRAM, VRAM_ONLY);
            assertEquals(Errno.ENOMEM, errno(() -> read(a, stuck, 0, 1)), "VRAM only and the window is pinned full");
        }
    }
}
