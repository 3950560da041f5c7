package dev.dmaplane.fs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.IntervalSubscription;
import dev.dmaplane.mm.InvalidateReason;
import dev.dmaplane.mm.MmuRange;
import dev.dmaplane.mm.PinFlags;
import dev.dmaplane.mm.PinnedPages;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Truncate against mappings and pins: {@code truncate_pagecache} in {@code mm/truncate.c} unmaps every mapping of
 * the pages past the new end (private COW copies too, {@code even_cows}) before removing them from the cache,
 * while {@code truncate_pagecache_range} (hole punch) leaves private COW copies alone; the unmap runs the
 * interval notifiers with {@code MMU_NOTIFY_CLEAR} ({@code mm/mmu_notifier.c}); a page removed from the cache
 * while pinned keeps its frame, because {@code FOLL_PIN} holds a reference of its own that only
 * {@code unpin_user_page} drops ({@code Documentation/core-api/pin_user_pages.rst}, {@code try_grab_folio} in
 * {@code mm/gup.c}); {@code unpin_user_pages_dirty_lock} dirties pages a device wrote.
 */
class TruncateTest {
    private static final int PAGE = (int) HostMemory.PAGE_SIZE;
    private final HostMemory mem = new HostMemory(64L << 20);
    private final Tracer tracer = new Tracer();
    private final MemFs fs = new MemFs(mem, tracer, "memfs0", false);

    @AfterEach
    void tearDown() {
        mem.close();
    }

    private static byte[] pattern(int len, int seed) {
        byte[] b = new byte[len];
        for (int i = 0; i < len; i++) {
            b[i] = (byte) (i * 13 + seed);
        }
        return b;
    }

    @Test
    void pinnedPageCachePageOutlivesTruncateUntilUnpin() {
        Inode f = fs.create("/f");
        byte[] data = pattern(2 * PAGE, 1);
        f.write(0, MemorySegment.ofArray(data));
        try (AddressSpace as = new AddressSpace(mem, tracer, "p")) {
            long va = as.mmapFile(f, 0, 2 * PAGE, Prot.PROT_READ | Prot.PROT_WRITE, true);
            PinnedPages pin = as.pin(va + PAGE, PAGE, EnumSet.of(PinFlags.WRITE));
            long pfn = pin.physAddrs()[0] >>> HostMemory.PAGE_SHIFT;
            assertEquals(pfn, f.frameOf(1).orElseThrow(), "the pin is of the page-cache page itself");
            assertEquals(3, mem.refCount(pfn), "page cache + page table entry + pin");
            assertEquals(1, mem.pinCount(pfn));

            f.truncate(PAGE);

            assertTrue(f.frameOf(1).isEmpty(), "the page left the cache");
            assertTrue(as.physAddr(va + PAGE).isEmpty(), "and the mapping");
            assertTrue(mem.isAllocated(pfn), "but the pinned frame is still allocated");
            assertEquals(1, mem.refCount(pfn), "held by the pin alone");
            assertEquals(1, mem.pinCount(pfn));
            byte[] now = mem.frame(pfn).toArray(ValueLayout.JAVA_BYTE);
            byte[] expect = new byte[PAGE];
            System.arraycopy(data, PAGE, expect, 0, PAGE);
            assertArrayEquals(expect, now, "its contents are intact");

            pin.unpin();
            assertFalse(mem.isAllocated(pfn), "the last unpin frees the frame");
            assertEquals(0, mem.refCount(pfn));
            assertEquals(0, mem.pinCount(pfn));
        }
    }

    @Test
    void truncateNotifiesClearOverTheMappedPagesPastTheEnd() {
        Inode f = fs.create("/f");
        f.write(0, MemorySegment.ofArray(pattern(4 * PAGE, 2)));
        try (AddressSpace as = new AddressSpace(mem, tracer, "p")) {
            long va = as.mmapFile(f, 0, 4 * PAGE, Prot.PROT_READ, true);
            as.read(va, MemorySegment.ofArray(new byte[4 * PAGE]));
            List<String> calls = new ArrayList<>();
            List<Long> seqs = new ArrayList<>();
            IntervalSubscription sub = as.registerNotifier(va, 4 * PAGE, (range, reason, seq) -> {
                calls.add(reason + " " + range);
                seqs.add(seq);
            });
            long s0 = sub.readBegin();
            f.truncate(PAGE + 1);
            assertEquals(List.of(InvalidateReason.CLEAR + " " + new MmuRange(va + 2 * PAGE, va + 4 * PAGE)), calls,
                    "page 1 still holds byte PAGE and stays mapped");
            assertTrue(sub.readRetry(s0));
            assertEquals(seqs.getFirst(), sub.readBegin());
            assertEquals(2, as.residentPages());
            assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                    () -> as.read(va + 2 * PAGE, MemorySegment.ofArray(new byte[1]))).errno(), "SIGBUS");
        }
    }

    @Test
    void truncateRemovesPrivateCowCopiesButHolePunchKeepsThem() {
        Inode f = fs.create("/f");
        f.write(0, MemorySegment.ofArray(pattern(4 * PAGE, 3)));
        try (AddressSpace as = new AddressSpace(mem, tracer, "p")) {
            long va = as.mmapFile(f, 0, 4 * PAGE, Prot.PROT_READ | Prot.PROT_WRITE, false);
            as.write(va + PAGE, MemorySegment.ofArray(new byte[]{99}));      // COW copy of page 1
            as.read(va + 2 * PAGE, MemorySegment.ofArray(new byte[1]));      // page 2 maps the cache
            byte[] fileByte = new byte[1];
            f.read(PAGE, MemorySegment.ofArray(fileByte));
            assertEquals(pattern(4 * PAGE, 3)[PAGE], fileByte[0], "a private store never reaches the file");

            f.punchHole(PAGE, 2 * PAGE);
            byte[] b = new byte[1];
            as.read(va + PAGE, MemorySegment.ofArray(b));
            assertEquals(99, b[0], "hole punch leaves the private copy");
            as.read(va + 2 * PAGE, MemorySegment.ofArray(b));
            assertEquals(0, b[0], "the page-cache page was unmapped and refaults as a hole");

            f.truncate(PAGE);
            assertTrue(as.physAddr(va + PAGE).isEmpty(), "truncate removes even the COW copy");
        }
    }

    @Test
    void sharedStoresDirtyTheFileAndUnpinDirtyMarksDmaWrites() {
        Inode f = fs.create("/f");
        f.truncate(2 * PAGE);
        try (AddressSpace as = new AddressSpace(mem, tracer, "p")) {
            long va = as.mmapFile(f, 0, 2 * PAGE, Prot.PROT_READ | Prot.PROT_WRITE, true);
            as.write(va, MemorySegment.ofArray(new byte[]{1, 2, 3}));
            assertEquals(1, f.dirtyPages());
            assertEquals(1, f.writeback());

            PinnedPages pin = as.pin(va + PAGE, PAGE, EnumSet.of(PinFlags.WRITE));
            f.writeback();
            // the "device" writes through the physical address, which the page cache cannot see
            mem.write(pin.physAddrs()[0] + 7, MemorySegment.ofArray(new byte[]{77}));
            assertEquals(0, f.dirtyPages());
            pin.unpinDirty();
            assertEquals(1, f.dirtyPages(), "unpin_user_pages_dirty_lock marks the page dirty");
            f.writeback();
            as.munmap(va, 2 * PAGE);
        }
        f.dropCache();
        byte[] b = new byte[1];
        f.read(PAGE + 7, MemorySegment.ofArray(b));
        assertEquals(77, b[0], "the DMA write reached the disk");
    }
}
