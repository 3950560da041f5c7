package dev.dmaplane.dmabuf;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dmabuf.heap.VramExporter.Policy;
import dev.dmaplane.dmabuf.heap.VramExporter.Target;
import dev.dmaplane.dmabuf.heap.VramExporter;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.testing.Eventually;
import dev.dmaplane.testing.Figures;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.SplittableRandom;

import static dev.dmaplane.dmabuf.ResvLocked.locked;
import static dev.dmaplane.dmabuf.ResvLocked.lockedGet;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A storm of moves, revocations, allocations and releases over VRAM buffers while importers read and write them by
 * DMA and bystander buffers share the same VRAM: every buffer must always hold exactly what was last written to it,
 * by the CPU or by a device, wherever it moved ({@code Documentation/driver-api/dma-buf.rst}: move_notify, then the
 * importer maps again after the exclusive fence; a revoked buffer's maps fail with ENODEV), and VRAM is never handed
 * to two buffers at once (drm_mm.c's rule). The HCA 04:00.0 shares the GPU's switch and reaches VRAM peer-to-peer;
 * 05:00.0 sits across the root complex, so mapping for it migrates the buffer to host memory.
 *
 * <p>Steps: {@code -Ddmaplane.adversarial.storm} (default 2000), seed {@code -Ddmaplane.adversarial.seed}.
 */
@Tag("adversarial")
@Timeout(1800)
class MoveStormTest {

    private final Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    private final DmaBufs bufs = DmaBufs.of(machine);
    private final PciFunction gpu = machine.pci().function("03:00.0");
    private final List<PciFunction> importers = List.of(machine.pci().function("04:00.0"),
            machine.pci().function("05:00.0"));
    private final VramExporter vram = new VramExporter(bufs, P2pDma.of(machine), gpu, 2, Policy.MIGRATE_TO_HOST);

    private long bytesChecked;
    private long moves;
    private long deviceAccesses;
    private long revoked;

    @AfterEach
    void close() {
        machine.close();
    }

    /** A live buffer and the bytes it must hold. */
    private record Live(DmaBuf buf, byte[] model) {
    }

    @Test
    void movesRevocationsAndBystandersNeverCorruptAByte() {
        int steps = Integer.getInteger("dmaplane.adversarial.storm", 2000);
        long seed = Long.getLong("dmaplane.adversarial.seed", 0x5EC_17L);
        SplittableRandom rnd = new SplittableRandom(seed);
        for (PciFunction f : importers) {
            f.setMaster(true);
            f.dma().setDmaMask(-1L);
        }
        long bar = vram.freeVram();
        List<Live> live = new ArrayList<>();
        for (int step = 0; step < steps; step++) {
            int action = live.size() < 4 ? 3 : rnd.nextInt(10);
            switch (action) {
                case 0, 1, 2 -> move(pick(rnd, live), rnd.nextBoolean() ? Target.VRAM : Target.HOST);
                case 3 -> {
                    if (live.size() < 32) {
                        live.add(allocate(rnd));
                    }
                }
                case 4 -> {
                    Live gone = live.remove(rnd.nextInt(live.size()));
                    check(gone);
                    release(gone.buf());
                }
                case 5 -> revoke(live.remove(rnd.nextInt(live.size())));
                case 6, 7, 8 -> deviceReadThenWrite(pick(rnd, live), importers.get(rnd.nextInt(2)), rnd);
                default -> cpuWrite(pick(rnd, live), rnd);
            }
            assertVramConsistent(bar, live, "after step " + step + " (action " + action + ")");
            if (step % 64 == 63) {
                live.forEach(this::check);
            }
        }
        live.forEach(this::check);
        live.forEach(l -> release(l.buf()));
        assertEquals(bar, vram.freeVram(), "all VRAM is free once every buffer is released");
        Figures.report("MoveStormTest", String.format("%d storm steps (seed %d): %d moves, %d device read+write "
                + "rounds, %d revocations, %d bytes checked, 0 corrupt", steps, seed, moves, deviceAccesses, revoked,
                bytesChecked));
    }

    private static Live pick(SplittableRandom rnd, List<Live> live) {
        return live.get(rnd.nextInt(live.size()));
    }

    private Live allocate(SplittableRandom rnd) {
        long size = (1 + rnd.nextInt(64)) * 4096L;
        DmaBuf buf = vram.allocate(size);
        byte[] model = new byte[(int) size];
        rnd.nextBytes(model);
        locked(buf, () -> buf.cpuWrite(0, MemorySegment.ofArray(model)));
        return new Live(buf, model);
    }

    private void move(Live l, Target target) {
        locked(l.buf(), () -> vram.migrate(l.buf(), target, "storm"));
        awaitKernel(l.buf());
        moves++;
        check(l);
    }

    private void revoke(Live l) {
        check(l);
        locked(l.buf(), () -> vram.revoke(l.buf(), "storm"));
        Attachment a = l.buf().attach(importers.getFirst(), new Importer(true, x -> {
        }));
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> locked(l.buf(), () -> l.buf().map(a, DmaDirection.BIDIRECTIONAL)));
        assertEquals(Errno.ENODEV, e.errno(), "a revoked buffer cannot be mapped again");
        l.buf().detach(a);
        l.buf().put();
        revoked++;
    }

    /** The importer maps, reads and checks every byte by DMA, writes new bytes by DMA, unmaps and detaches. */
    private void deviceReadThenWrite(Live l, PciFunction dev, SplittableRandom rnd) {
        Attachment a = l.buf().attach(dev, new Importer(true, x -> {
        }));
        DmaBufMapping m = lockedGet(l.buf(), () -> l.buf().map(a, DmaDirection.BIDIRECTIONAL));
        awaitKernel(l.buf());
        byte[] seen = new byte[l.model().length];
        long off = 0;
        for (DmaSegment s : m.segments()) {
            dev.dma().busMaster().read(s.dmaAddress(), MemorySegment.ofArray(seen).asSlice(off, s.length()));
            off += s.length();
        }
        compare(l, seen, dev.name() + " by DMA");
        rnd.nextBytes(l.model());
        off = 0;
        for (DmaSegment s : m.segments()) {
            dev.dma().busMaster().write(s.dmaAddress(), MemorySegment.ofArray(l.model()).asSlice(off, s.length()));
            off += s.length();
        }
        locked(l.buf(), () -> l.buf().unmap(m));
        l.buf().detach(a);
        deviceAccesses++;
    }

    private void cpuWrite(Live l, SplittableRandom rnd) {
        rnd.nextBytes(l.model());
        locked(l.buf(), () -> l.buf().cpuWrite(0, MemorySegment.ofArray(l.model())));
    }

    private void check(Live l) {
        byte[] now = new byte[l.model().length];
        locked(l.buf(), () -> l.buf().cpuRead(0, MemorySegment.ofArray(now)));
        compare(l, now, "the CPU");
    }

    private void compare(Live l, byte[] seen, String by) {
        int i = Arrays.mismatch(l.model(), seen);
        if (i >= 0) {
            long corrupt = 0;
            for (int k = 0; k < seen.length; k++) {
                corrupt += seen[k] != l.model()[k] ? 1 : 0;
            }
            fail("dma-buf " + l.buf().ino() + " as read by " + by + ": " + corrupt + " corrupt byte(s), the first at +0x"
                    + Integer.toHexString(i) + " (" + vram.placement(l.buf()) + ")");
        }
        bytesChecked += seen.length;
    }

    /** The buffers in VRAM never overlap, and free VRAM plus theirs is the BAR. */
    private void assertVramConsistent(long bar, List<Live> live, String when) {
        List<long[]> inVram = new ArrayList<>();
        for (Live l : live) {
            if (vram.placement(l.buf()).orElseThrow() == Target.VRAM) {
                inVram.add(new long[] {vram.vramOffset(l.buf()), l.buf().size()});
            }
        }
        inVram.sort(Comparator.comparingLong(r -> r[0]));
        long end = 0;
        long used = 0;
        for (long[] r : inVram) {
            assertTrue(r[0] >= end, "VRAM +0x" + Long.toHexString(r[0]) + " is held by two buffers " + when);
            end = r[0] + r[1];
            used += r[1];
        }
        assertEquals(bar, vram.freeVram() + used, "free VRAM plus the VRAM buffers hold is the BAR " + when);
    }

    /**
     * Drops the test's reference and waits (at most 10 s) for the release: a move's worker holds a reference of its
     * own until just after it signals the move fence, so the last put may be the worker's.
     */
    private static void release(DmaBuf buf) {
        buf.put();
        Eventually.eventually(buf::isReleased, Duration.ofSeconds(10), "dma-buf " + buf.ino() + " released");
    }

    private static void awaitKernel(DmaBuf buf) {
        assertTrue(buf.resv().await(ResvUsage.KERNEL, Duration.ofSeconds(10)), "the move finished");
    }

}
