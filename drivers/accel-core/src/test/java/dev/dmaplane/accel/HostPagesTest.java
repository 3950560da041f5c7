package dev.dmaplane.accel;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;

import static dev.dmaplane.accel.AccelRig.MIB;
import static dev.dmaplane.accel.BufferObjectTest.errno;
import static dev.dmaplane.accel.BufferObjectTest.pattern;
import static dev.dmaplane.accel.BufferObjectTest.read;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Host backing of buffer objects as {@code ttm_pool_alloc} takes it (drivers/gpu/drm/ttm/ttm_pool.c): blocks of the
 * largest order that fits what is left, one order lower while the buddy allocator has none of that order, order 0
 * failing the allocation with {@code ENOMEM} and nothing kept.
 */
class HostPagesTest {
    private static final EnumSet<Placement> HOST_ONLY = EnumSet.of(Placement.HOST);
    private static final long PAGE = HostMemory.PAGE_SIZE;

    private final AccelRig rig = new AccelRig();

    @AfterEach
    void tearDown() throws InterruptedException {
        rig.close();
    }

    /** Allocated blocks per order, as {@code /proc/pagetypeinfo} would count them. */
    private static long[] blocksByOrder(HostMemory mem) {
        long[] n = new long[HostMemory.MAX_ORDER + 1];
        for (long pfn = 0; pfn < mem.totalFrames(); pfn++) {
            if (mem.isAllocated(pfn) && mem.headOf(pfn) == pfn) {
                n[mem.orderOf(pfn)]++;
            }
        }
        return n;
    }

    @Test
    void aHostObjectTakesTheLargestBlocksThatFit() {
        HostMemory mem = rig.machine.memory();
        try (AccelContext a = rig.device.open()) {
            long[] before = blocksByOrder(mem);
            int h = a.createBo(4 * MIB + 3 * PAGE, Placement.HOST, HOST_ONLY);
            long[] after = blocksByOrder(mem);
            assertEquals(before[9] + 2, after[9], "4 MiB as two 2 MiB blocks");
            assertEquals(before[1] + 1, after[1], "then 8 KiB");
            assertEquals(before[0] + 1, after[0], "then 4 KiB");
            byte[] data = pattern((int) (4 * MIB + 3 * PAGE), 7);
            a.write(h, 0, MemorySegment.ofArray(data));
            assertArrayEquals(data, read(a, h, 0, data.length));
            a.closeBo(h);
            assertArrayEquals(before, blocksByOrder(mem), "every block given back");
        }
    }

    @Test
    void withOnlySinglePagesFreeItFallsBackToThemAndEnomemKeepsNothing() {
        HostMemory mem = rig.machine.memory();
        List<Long> held = new ArrayList<>();
        try (AccelContext a = rig.device.open()) {
            // every free frame taken as a single page, every other one given back: no free block above order 0
            while (true) {
                try {
                    held.add(mem.allocPages(0));
                } catch (ErrnoException e) {
                    assertEquals(Errno.ENOMEM, e.errno(), e.getMessage());
                    break;
                }
            }
            List<Long> kept = new ArrayList<>();
            for (int i = 0; i < held.size(); i++) {
                if (i % 2 == 0 && i < 2 * 300) {
                    mem.putPage(held.get(i));
                } else {
                    kept.add(held.get(i));
                }
            }
            held.clear();
            held.addAll(kept);
            long frames = mem.allocatedFrames();
            int h = a.createBo(64 * PAGE, Placement.HOST, HOST_ONLY);
            assertEquals(frames + 64, mem.allocatedFrames(), "64 single pages");
            byte[] data = pattern((int) (64 * PAGE), 9);
            a.write(h, 0, MemorySegment.ofArray(data));
            assertArrayEquals(data, read(a, h, 0, data.length));

            long left = 300 - 64;
            frames = mem.allocatedFrames();
            assertEquals(Errno.ENOMEM, errno(() -> a.createBo((left + 1) * PAGE, Placement.HOST, HOST_ONLY)));
            assertEquals(frames, mem.allocatedFrames(), "the pages taken before ENOMEM were given back");
        } finally {
            held.forEach(mem::putPage);
        }
    }
}
