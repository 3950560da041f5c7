package dev.dmaplane.dmabuf;

import dev.dmaplane.dmabuf.heap.VramExporter;
import dev.dmaplane.dmabuf.heap.VramExporter.Policy;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.MachineFiles;
import dev.dmaplane.p2pdma.P2pDma;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.SplittableRandom;

import static dev.dmaplane.dmabuf.ResvLocked.locked;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The VRAM exporter's range allocator keeps the rule every GPU memory manager keeps (drm_mm.c: a node is handed to
 * one allocation at a time, holes never overlap nodes or each other): live buffers never share a byte of VRAM, and
 * free bytes plus allocated bytes always make the whole BAR. Each buffer holds a pattern of its own, checked after
 * every other buffer was allocated and freed around it.
 */
class VramAllocationTest {
    private static final long KIB = 1024;
    private static final long MIB = 1024 * KIB;

    private final MachineFiles files = new MachineFiles();

    @AfterEach
    void close() {
        files.close();
    }

    private record Live(DmaBuf buf, long offset, long size, int seed) {
    }

    private VramExporter exporter() {
        Machine m = files.boot();
        return new VramExporter(DmaBufs.of(m), P2pDma.of(m), m.pci().function("03:00.0"), 2, Policy.MIGRATE_TO_HOST);
    }

    private static long vramSize(VramExporter ex) {
        return ex.freeVram(); // before the first allocation
    }

    private static Live allocate(VramExporter ex, long size, int seed) {
        DmaBuf buf = ex.allocate(size);
        fill(buf, seed);
        return new Live(buf, ex.vramOffset(buf), buf.size(), seed);
    }

    private static byte[] pattern(long size, int seed) {
        byte[] b = new byte[(int) size];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) (i * 31 + seed * 7 + (i >>> 12));
        }
        return b;
    }

    private static void fill(DmaBuf buf, int seed) {
        locked(buf, () -> buf.cpuWrite(0, MemorySegment.ofArray(pattern(buf.size(), seed))));
    }

    private static void assertIntact(Live l) {
        byte[] got = new byte[(int) l.size()];
        locked(l.buf(), () -> l.buf().cpuRead(0, MemorySegment.ofArray(got)));
        assertArrayEquals(pattern(l.size(), l.seed()), got, "dma-buf " + l.buf().ino() + " at VRAM +0x"
                + Long.toHexString(l.offset()) + " was overwritten through another buffer");
    }

    /** No two live buffers share VRAM, all lie inside the BAR, and free + allocated is the whole BAR. */
    private static void assertConsistent(VramExporter ex, long vram, List<Live> live) {
        List<Live> byOffset = new ArrayList<>(live);
        byOffset.sort(Comparator.comparingLong(Live::offset));
        long end = 0;
        long allocated = 0;
        for (Live l : byOffset) {
            assertTrue(l.offset() >= end, "VRAM +0x" + Long.toHexString(l.offset()) + " (" + l.size()
                    + " bytes) overlaps the buffer before it, which ends at +0x" + Long.toHexString(end));
            end = l.offset() + l.size();
            allocated += l.size();
        }
        assertTrue(end <= vram, "a buffer ends past the BAR at +0x" + Long.toHexString(end));
        assertEquals(vram, ex.freeVram() + allocated, "free VRAM plus allocated VRAM is the BAR's size");
    }

    /** The pattern of issue 17 defect 1: the last 1 MiB used to overlap the fifth buffer by 512 KiB. */
    @Test
    void aFreeRangeTakenFromTheMiddleOfTheFreeListIsSplitByItsOwnSize() {
        VramExporter ex = exporter();
        long vram = vramSize(ex);
        List<Live> live = new ArrayList<>();
        long[] sizes = {MIB, 256 * KIB, MIB, MIB, MIB};
        for (int i = 0; i < sizes.length; i++) {
            live.add(allocate(ex, sizes[i], i));
        }
        Live second = live.get(1);
        Live fourth = live.get(3);
        second.buf().put();
        fourth.buf().put();
        live.removeAll(List.of(second, fourth));
        live.add(allocate(ex, 512 * KIB, 5));
        live.add(allocate(ex, MIB, 6));

        assertConsistent(ex, vram, live);
        live.forEach(VramAllocationTest::assertIntact);
        live.forEach(l -> l.buf().put());
        assertEquals(vram, ex.freeVram(), "every byte is free again once every buffer is released");
    }

    /** A seeded mix of allocations and releases of 4 KiB..1 MiB, checked against the rule after every step. */
    @Test
    void randomAllocationsAndReleasesNeverShareVram() {
        VramExporter ex = exporter();
        long vram = vramSize(ex);
        SplittableRandom rnd = new SplittableRandom(0x17_01L);
        List<Live> live = new ArrayList<>();
        for (int step = 0; step < 3000; step++) {
            if (!live.isEmpty() && (live.size() > 40 || rnd.nextInt(5) < 2)) {
                Live gone = live.remove(rnd.nextInt(live.size()));
                assertIntact(gone);
                gone.buf().put();
            } else {
                long pages = 1 + rnd.nextInt(256);
                live.add(allocate(ex, pages * 4 * KIB + rnd.nextInt(4096), step));
            }
            assertConsistent(ex, vram, live);
        }
        live.forEach(VramAllocationTest::assertIntact);
        live.forEach(l -> l.buf().put());
        assertEquals(vram, ex.freeVram());
    }
}
