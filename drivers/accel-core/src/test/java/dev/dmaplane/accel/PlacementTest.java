package dev.dmaplane.accel;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.fence.Reservation;
import dev.dmaplane.fence.ResvFence;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.mem.HostMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Optional;

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

    /**
     * A move's host pages come from the page allocator without {@code __GFP_ZERO}, as {@code ttm_bo_handle_move_mem}
     * ({@code drivers/gpu/drm/ttm/ttm_bo.c}) creates the TT of an object leaving VRAM with {@code zero_alloc} false;
     * when the copy fails they are zeroed before the move fence signals (with the copy's error), so the object never
     * shows what a former owner left in them.
     */
    @Test
    void aFailedEvictionShowsZerosNotWhatTheHostPagesHeld() {
        HostMemory mem = rig.machine.memory();
        List<Long> blocks = new ArrayList<>();
        long resident;
        do { // every free 2 MiB block, up to the first never used (backed when touched), dirtied and given back
            resident = mem.residentBytes();
            long pfn = mem.allocPages(HostMemory.MAX_ORDER, false);
            mem.slice(pfn << HostMemory.PAGE_SHIFT, HostMemory.HUGE_PAGE_SIZE).fill((byte) 0x5a);
            blocks.add(pfn);
        } while (mem.residentBytes() == resident);
        blocks.forEach(mem::putPage);
        try (AccelContext a = rig.device.open(); AccelContext b = rig.device.open()) {
            int h = a.createBo(2 * MIB, Placement.VRAM, EnumSet.of(Placement.VRAM, Placement.HOST));
            rig.provider.failMoves = Errno.EIO;
            for (int i = 0; i < 3 && a.info(h).placement() != Placement.HOST; i++) {
                b.createBo(2 * MIB, Placement.VRAM, VRAM_ONLY);
            }
            assertEquals(Placement.HOST, a.info(h).placement(), "evicted for the third object");
            Fence move = a.reservation(h).entries().stream().filter(e -> e.usage() == ResvUsage.KERNEL)
                    .map(ResvFence::fence).toList().getLast();
            assertTrue(move.isSignaled(), "eviction waits for its move");
            assertEquals(Optional.of(Errno.EIO), move.error(), "the move fence carries the copy's error");
            rig.provider.failMoves = null;
            assertArrayEquals(new byte[(int) (2 * MIB)], read(a, h, 0, (int) (2 * MIB)), "zeros, not 0x5a");
        }
    }
}
