package dev.dmaplane.mem;

import com.sun.management.ThreadMXBean;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Page frame allocation, reference and pin counts, modelled on mm/page_alloc.c and struct folio. */
class HostMemoryTest {
    /** The RAM limit the physical address map sets: the 64-bit MMIO window starts at 1 TiB, less the PCI hole. */
    private static final long MOST_RAM = HostMemory.MAX_RAM;

    @Test
    void sixtyFourGiBCostsOnlyWhatIsTouched() {
        try (HostMemory mem = new HostMemory(64L << 30)) {
            assertEquals(0, mem.residentBytes());
            long pfn = mem.allocPages(0);
            mem.frame(pfn).set(ValueLayout.JAVA_LONG, 0, 42L);
            assertEquals(HostMemory.HUGE_PAGE_SIZE, mem.residentBytes());
            assertEquals(42L, mem.frame(pfn).get(ValueLayout.JAVA_LONG, 0));
        }
    }

    @Test
    void blocksAreNaturallyAlignedAndZeroed() {
        try (HostMemory mem = new HostMemory(8L << 20)) {
            for (int order = 0; order <= HostMemory.MAX_ORDER; order++) {
                long pfn = mem.allocPages(order);
                assertEquals(0, pfn & ((1L << order) - 1), "order " + order + " block at 0x" + Long.toHexString(pfn));
                assertEquals(order, mem.orderOf(pfn + (1L << order) - 1));
                assertEquals(pfn, mem.headOf(pfn + (1L << order) - 1));
                MemorySegment seg = mem.slice(pfn << HostMemory.PAGE_SHIFT, HostMemory.PAGE_SIZE << order);
                for (long off = 0; off < seg.byteSize(); off += 512) {
                    assertEquals(0, seg.get(ValueLayout.JAVA_BYTE, off));
                }
                seg.fill((byte) 0x5a);
                mem.putPage(pfn);
            }
            // a freed, dirtied block comes back zeroed
            long again = mem.allocPages(HostMemory.MAX_ORDER);
            assertEquals(0, mem.slice(again << HostMemory.PAGE_SHIFT, 4096).get(ValueLayout.JAVA_BYTE, 100));
        }
    }

    /** Without {@code __GFP_ZERO} (mm/page_alloc.c {@code alloc_pages}) a block keeps what it held when freed. */
    @Test
    void withoutZeroABlockKeepsWhatItHeld() {
        try (HostMemory mem = new HostMemory(4L << 20)) {
            long pfn = mem.allocPages(HostMemory.MAX_ORDER);
            mem.slice(pfn << HostMemory.PAGE_SHIFT, HostMemory.HUGE_PAGE_SIZE).fill((byte) 0x5a);
            mem.putPage(pfn);
            long again = mem.allocPages(HostMemory.MAX_ORDER, false);
            assertEquals(pfn, again, "the block just freed");
            MemorySegment seg = mem.slice(again << HostMemory.PAGE_SHIFT, HostMemory.HUGE_PAGE_SIZE);
            assertEquals(0x5a, seg.get(ValueLayout.JAVA_BYTE, 0));
            assertEquals(0x5a, seg.get(ValueLayout.JAVA_BYTE, HostMemory.HUGE_PAGE_SIZE - 1));
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> mem.allocPages(10, false)).errno());
        }
    }

    @Test
    void freeingEverythingMergesBuddiesBackToHugePages() {
        try (HostMemory mem = new HostMemory(4L << 20)) {
            List<Long> pages = new ArrayList<>();
            for (int i = 0; i < 1024; i++) {
                pages.add(mem.allocPages(0));
            }
            assertThrows(ErrnoException.class, () -> mem.allocPages(0));
            assertEquals(1024, mem.allocatedFrames());
            for (int i = 0; i < pages.size(); i += 2) {
                mem.putPage(pages.get(i));
            }
            ErrnoException e = assertThrows(ErrnoException.class, () -> mem.allocPages(1));
            assertEquals(Errno.ENOMEM, e.errno());
            for (int i = 1; i < pages.size(); i += 2) {
                mem.putPage(pages.get(i));
            }
            assertEquals(0, mem.allocatedFrames());
            mem.allocPages(HostMemory.MAX_ORDER);
            mem.allocPages(HostMemory.MAX_ORDER);
        }
    }

    /** A pinned block counts all its frames; unpinned and free frames count none; far, untouched RAM costs nothing. */
    @Test
    void pinnedFramesCountsTheFramesOfPinnedBlocks() {
        try (HostMemory mem = new HostMemory(MOST_RAM)) {
            long single = mem.allocPages(0);
            long pair = mem.allocPages(1);
            long plain = mem.allocPages(2);
            assertEquals(0, mem.pinnedFrames());
            mem.pinPage(single);
            mem.pinPage(pair + 1); // a pin on a tail frame pins the block
            assertEquals(3, mem.pinnedFrames());
            mem.unpinPage(single);
            assertEquals(2, mem.pinnedFrames());
            mem.unpinPage(pair + 1);
            assertEquals(0, mem.pinnedFrames());
            assertTrue(mem.isAllocated(plain));
        }
    }

    @Test
    void pinnedFrameOutlivesItsLastReferenceUntilUnpinned() {
        try (HostMemory mem = new HostMemory(2L << 20)) {
            long pfn = mem.allocPages(0);
            mem.pinPage(pfn);
            assertEquals(1, mem.pinCount(pfn));
            assertEquals(1, mem.pinsOutstanding());
            assertEquals(2, mem.refCount(pfn));
            assertFalse(mem.putPage(pfn), "the pin keeps the frame");
            assertTrue(mem.isAllocated(pfn));
            assertTrue(mem.unpinPage(pfn), "last unpin frees the frame");
            assertEquals(0, mem.pinsOutstanding());
            assertEquals(1, mem.pinsReleased());
            assertFalse(mem.isAllocated(pfn));
            assertEquals(0, mem.refCount(pfn));
        }
    }

    @Test
    void badInputNamesTheValue() {
        try (HostMemory mem = new HostMemory(2L << 20)) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> mem.allocPages(10));
            assertEquals(Errno.EINVAL, e.errno());
            assertTrue(e.getMessage().contains("10"));
            e = assertThrows(ErrnoException.class, () -> mem.frame(512));
            assertEquals(Errno.EFAULT, e.errno());
            assertTrue(e.getMessage().contains("0x200"));
            e = assertThrows(ErrnoException.class, () -> mem.putPage(3));
            assertEquals(Errno.EFAULT, e.errno());
            long pfn = mem.allocPages(0);
            e = assertThrows(ErrnoException.class, () -> mem.unpinPage(pfn));
            assertEquals(Errno.EINVAL, e.errno());
            assertEquals(1, mem.refCount(pfn), "a refused unpin changes nothing");
            e = assertThrows(ErrnoException.class, () -> new HostMemory(3L << 20));
            assertEquals(Errno.EINVAL, e.errno());
        }
    }

    @Test
    void readAndWriteCrossSections() {
        try (HostMemory mem = new HostMemory(4L << 20)) {
            mem.allocPages(HostMemory.MAX_ORDER);
            mem.allocPages(HostMemory.MAX_ORDER);
            byte[] data = new byte[8192];
            for (int i = 0; i < data.length; i++) {
                data[i] = (byte) (i * 7);
            }
            long pa = HostMemory.HUGE_PAGE_SIZE - 4096;
            mem.write(pa, MemorySegment.ofArray(data));
            byte[] back = new byte[8192];
            mem.read(pa, MemorySegment.ofArray(back));
            assertArrayEquals(data, back);
            assertThrows(ErrnoException.class, () -> mem.read(4L << 20, MemorySegment.ofArray(new byte[1])));
        }
    }

    @Test
    void closingRevokesEveryView() {
        HostMemory mem = new HostMemory(2L << 20);
        long pfn = mem.allocPages(0);
        MemorySegment view = mem.frame(pfn);
        mem.close();
        assertThrows(IllegalStateException.class, () -> view.get(ValueLayout.JAVA_BYTE, 0));
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> mem.allocPages(0)).errno());
    }

    /**
     * The section bookkeeping is sparse, as {@code mem_section} is with {@code CONFIG_SPARSEMEM_EXTREME}
     * ({@code mm/sparse.c}): a terabyte of RAM costs a directory of roots, not a slot per 2 MiB section, and frames
     * at both ends of it still work. The heap the constructor takes is counted exactly by the JVM for this thread.
     */
    @Test
    void aTerabyteOfRamCostsOnlyItsSectionDirectory() {
        ThreadMXBean threads = (ThreadMXBean) ManagementFactory.getThreadMXBean();
        long tid = Thread.currentThread().threadId();
        long before = threads.getThreadAllocatedBytes(tid);
        HostMemory mem = new HostMemory(MOST_RAM);
        long cost = threads.getThreadAllocatedBytes(tid) - before;
        try (mem) {
            assertTrue(cost < 64 << 10, "building 1 TiB of RAM took " + cost + " bytes of heap");
            long pfn = mem.allocPages(0);
            mem.frame(pfn).set(ValueLayout.JAVA_LONG, 0, 7L);
            long top = mem.end() - HostMemory.PAGE_SIZE;
            assertEquals(1L << 40, mem.end(), "RAM above the hole ends where device memory begins");
            mem.write(top, MemorySegment.ofArray(new byte[]{42}));
            byte[] back = new byte[1];
            mem.read(top, MemorySegment.ofArray(back));
            assertEquals(42, back[0]);
            assertFalse(mem.isAllocated(top >>> HostMemory.PAGE_SHIFT));
            assertEquals(0, mem.refCount((top >>> HostMemory.PAGE_SHIFT) - 1), "an untouched section in a used root");
            assertEquals(2 * HostMemory.HUGE_PAGE_SIZE, mem.residentBytes());
            assertEquals(7L, mem.frame(pfn).get(ValueLayout.JAVA_LONG, 0));
        }
    }

    /** RAM beyond what the physical address map gives it (device memory is decoded from 1 TiB) is refused. */
    @Test
    void sizeBeyondThePhysicalAddressMapIsEinvalNamingTheLimit() {
        for (long bytes : new long[]{MOST_RAM + HostMemory.HUGE_PAGE_SIZE, 1L << 40, 1L << 51, Long.MAX_VALUE & -HostMemory.HUGE_PAGE_SIZE}) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> new HostMemory(bytes).close());
            assertEquals(Errno.EINVAL, e.errno());
            assertTrue(e.getMessage().contains(Long.toString(bytes)) && e.getMessage().contains(Long.toString(MOST_RAM)),
                    e.getMessage());
        }
    }

    /**
     * RAM stops at 3 GiB and continues at 4 GiB, as a PC's {@code e820} map has it: the PCI hole between holds the
     * 32-bit MMIO window, so no frame lies there and a range across it is not RAM.
     */
    @Test
    void ramAboveThreeGiBContinuesAboveThePciHole() {
        long hole = HostMemory.PCI_HOLE_START;
        try (HostMemory mem = new HostMemory(8L << 30)) {
            assertEquals(9L << 30, mem.end());
            assertEquals((8L << 30) >>> HostMemory.PAGE_SHIFT, mem.totalFrames());
            assertTrue(mem.contains(hole - 4096, 4096));
            assertFalse(mem.contains(hole, 4096));
            assertFalse(mem.contains(hole - 4096, 8192), "a range across the hole is not RAM");
            assertTrue(mem.contains(HostMemory.PCI_HOLE_END, 4096));
            assertTrue(mem.contains(mem.end() - 4096, 4096));
            assertFalse(mem.contains(mem.end() - 4096, 4097));
            assertTrue(mem.overlaps(hole - 4096, 8192));
            assertFalse(mem.overlaps(hole, HostMemory.PCI_HOLE_END - hole));
            assertTrue(mem.overlaps(HostMemory.PCI_HOLE_END - 1, 2));
            assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class, () -> mem.frame(hole >>> HostMemory.PAGE_SHIFT)).errno());
            assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                    () -> mem.read(hole + 4096, MemorySegment.ofArray(new byte[1]))).errno());
            mem.write(HostMemory.PCI_HOLE_END, MemorySegment.ofArray(new byte[]{5}));
            byte[] back = new byte[1];
            mem.read(HostMemory.PCI_HOLE_END, MemorySegment.ofArray(back));
            assertEquals(5, back[0]);
        }
        try (HostMemory small = new HostMemory(2L << 30)) {
            assertEquals(2L << 30, small.end(), "RAM below the hole needs no remapping");
            assertFalse(small.contains(2L << 30, 1));
        }
    }
}
