package dev.dmaplane.p2pdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Bar;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;

/**
 * A genalloc-like pool of device memory ({@code lib/genalloc.c} with {@code min_alloc_order = PAGE_SHIFT} and the
 * default {@code gen_pool_first_fit}): chunks of BAR ranges in the order added, each a bitmap of 4 KiB pages; an
 * allocation takes the first run of free pages that fits. Unlike genalloc, a run of at most one chunk of device
 * memory ({@link Bar.Memory#CHUNK_SIZE}) never straddles such a chunk, so the CPU gets one segment for it.
 * Not thread-safe: the owner serialises access.
 */
final class PagePool {
    static final long PAGE = 4096;

    /** A placed allocation: the BAR it lies in and its bus address. */
    record Placement(Bar bar, long busAddress) {
    }

    private record Chunk(Bar bar, long barOffset, long busBase, int pages, BitSet used) {
        long end() {
            return busBase + (long) pages * PAGE;
        }
    }

    private final List<Chunk> chunks = new ArrayList<>();
    private long totalPages;
    private long freePages;

    /** Adds {@code size} bytes of {@code bar} from {@code barOffset}, both page-aligned ({@code gen_pool_add}). */
    void add(Bar bar, long barOffset, long size) {
        long pages = size / PAGE;
        if (pages > Integer.MAX_VALUE) {
            throw new ErrnoException(Errno.EINVAL, "p2pmem range of " + size + " bytes exceeds " + Integer.MAX_VALUE + " pages");
        }
        chunks.add(new Chunk(bar, barOffset, bar.address() + barOffset, (int) pages, new BitSet((int) pages)));
        totalPages += pages;
        freePages += pages;
    }

    /** Whether {@code [barOffset, barOffset + size)} of {@code bar} overlaps a range already added. */
    boolean overlaps(Bar bar, long barOffset, long size) {
        for (Chunk c : chunks) {
            if (c.bar() == bar && barOffset < c.barOffset() + (long) c.pages() * PAGE && c.barOffset() < barOffset + size) {
                return true;
            }
        }
        return false;
    }

    long totalBytes() {
        return totalPages * PAGE;
    }

    long freeBytes() {
        return freePages * PAGE;
    }

    /** Pages {@code size} bytes occupy. */
    static long pagesFor(long size) {
        return (size + PAGE - 1) / PAGE;
    }

    /** First fit of {@code pagesFor(size)} free pages, or null when no free run is large enough. */
    Placement alloc(long size) {
        long n = pagesFor(size);
        for (Chunk c : chunks) {
            if (n > c.pages()) {
                continue;
            }
            long chunkPages = Math.min(Bar.Memory.CHUNK_SIZE, c.bar().size()) / PAGE;
            long barPage0 = c.barOffset() / PAGE;
            int from = 0;
            while (true) {
                int start = c.used().nextClearBit(from);
                if (start + n > c.pages()) {
                    break;
                }
                long first = barPage0 + start;
                long last = first + n - 1;
                if (n <= chunkPages && first / chunkPages != last / chunkPages) {
                    from = (int) ((last / chunkPages) * chunkPages - barPage0);
                    continue;
                }
                int taken = c.used().nextSetBit(start);
                if (taken < 0 || taken >= start + n) {
                    c.used().set(start, (int) (start + n));
                    freePages -= n;
                    return new Placement(c.bar(), c.busBase() + start * PAGE);
                }
                from = taken + 1;
            }
        }
        return null;
    }

    /** Returns the pages of an allocation of {@code size} bytes at {@code busAddress} ({@code gen_pool_free}). */
    void free(long busAddress, long size) {
        long n = pagesFor(size);
        for (Chunk c : chunks) {
            if (busAddress >= c.busBase() && busAddress < c.end()) {
                int start = (int) ((busAddress - c.busBase()) / PAGE);
                if (start + n > c.pages() || c.used().nextClearBit(start) < start + n) {
                    throw new ErrnoException(Errno.EINVAL, String.format("p2pmem %#x+%#x is not allocated", busAddress, size));
                }
                c.used().clear(start, (int) (start + n));
                freePages += n;
                return;
            }
        }
        throw new ErrnoException(Errno.EINVAL, String.format("p2pmem %#x is in no range of this pool", busAddress));
    }
}
