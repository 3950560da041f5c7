package dev.dmaplane.genalloc;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;

/**
 * A pool of special memory ({@code struct gen_pool} of {@code lib/genalloc.c} with {@code min_alloc_order =
 * PAGE_SHIFT} and the default {@code gen_pool_first_fit}): address ranges in the order added
 * ({@code gen_pool_add}), each a bitmap of 4 KiB pages; an allocation takes the first run of free pages that fits.
 * Unlike genalloc, a range may carry a boundary: a run of at most that many bytes never straddles a multiple of it
 * (p2pmem uses it so the CPU gets one segment of device memory per allocation). Addresses are whatever the owner
 * adds: bus addresses, VRAM offsets. Thread-safe.
 */
public final class GenPool {
    /** The allocation granule ({@code 1 << min_alloc_order}). */
    public static final long PAGE = 4096;

    private record Chunk(long base, int pages, long boundaryPages, BitSet used) {
        long end() {
            return base + (long) pages * PAGE;
        }
    }

    private final List<Chunk> chunks = new ArrayList<>();
    private long totalPages;
    private long freePages;

    /** Pages {@code size} bytes occupy. */
    public static long pagesFor(long size) {
        return (size + PAGE - 1) / PAGE;
    }

    /**
     * Adds {@code size} bytes from {@code base} ({@code gen_pool_add}); {@code boundary} is 0 for none, otherwise a
     * power-of-two multiple of the page size that runs of at most that size never straddle.
     *
     * @throws ErrnoException {@code EINVAL} naming the value for a base, size or boundary not page-aligned, a size
     *                        that is not positive or exceeds {@link Integer#MAX_VALUE} pages, a bad boundary;
     *                        {@code EBUSY} for a range overlapping one already added
     */
    public synchronized void add(long base, long size, long boundary) {
        if (base < 0 || base % PAGE != 0 || size <= 0 || size % PAGE != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("gen_pool_add: range %#x+%#x is not page-aligned and positive", base, size));
        }
        if (size / PAGE > Integer.MAX_VALUE) {
            throw new ErrnoException(Errno.EINVAL, "gen_pool_add: range of " + size + " bytes exceeds " + Integer.MAX_VALUE + " pages");
        }
        if (boundary < 0 || boundary % PAGE != 0 || Long.bitCount(boundary) > 1) {
            throw new ErrnoException(Errno.EINVAL, String.format("gen_pool_add: boundary %#x is not 0 or a power-of-two multiple of a page", boundary));
        }
        if (overlaps(base, size)) {
            throw new ErrnoException(Errno.EBUSY, String.format("gen_pool_add: range %#x+%#x overlaps one already added", base, size));
        }
        int pages = (int) (size / PAGE);
        chunks.add(new Chunk(base, pages, boundary / PAGE, new BitSet(pages)));
        totalPages += pages;
        freePages += pages;
    }

    /** Whether {@code [base, base + size)} overlaps a range already added. */
    public synchronized boolean overlaps(long base, long size) {
        for (Chunk c : chunks) {
            if (base < c.end() && c.base() < base + size) {
                return true;
            }
        }
        return false;
    }

    /** Bytes added ({@code gen_pool_size}). */
    public synchronized long size() {
        return totalPages * PAGE;
    }

    /** Bytes not handed out ({@code gen_pool_avail}). */
    public synchronized long avail() {
        return freePages * PAGE;
    }

    /**
     * First fit of {@code pagesFor(size)} free pages ({@code gen_pool_alloc}).
     *
     * @return the address of the first byte, or -1 when no free run is large enough (genalloc returns 0, which is
     *         a valid address here)
     * @throws ErrnoException {@code EINVAL} for a size that is not positive
     */
    public synchronized long alloc(long size) {
        if (size <= 0) {
            throw new ErrnoException(Errno.EINVAL, "gen_pool_alloc of " + size + " bytes");
        }
        long n = pagesFor(size);
        if (n > freePages) {
            return -1;
        }
        for (Chunk c : chunks) {
            long at = fit(c, n);
            if (at >= 0) {
                c.used().set((int) at, (int) (at + n));
                freePages -= n;
                return c.base() + at * PAGE;
            }
        }
        return -1;
    }

    private static long fit(Chunk c, long n) {
        if (n > c.pages()) {
            return -1;
        }
        long b = c.boundaryPages();
        long page0 = c.base() / PAGE;
        int from = 0;
        while (true) {
            int start = c.used().nextClearBit(from);
            if (start + n > c.pages()) {
                return -1;
            }
            long first = page0 + start;
            long last = first + n - 1;
            if (b > 0 && n <= b && first / b != last / b) {
                from = (int) ((last / b) * b - page0);
                continue;
            }
            int taken = c.used().nextSetBit(start);
            if (taken < 0 || taken >= start + n) {
                return start;
            }
            from = taken + 1;
        }
    }

    /**
     * Returns the pages of an allocation of {@code size} bytes at {@code address} ({@code gen_pool_free}).
     *
     * @throws ErrnoException {@code EINVAL} naming the range when it is in no range of the pool or not allocated
     */
    public synchronized void free(long address, long size) {
        long n = pagesFor(size);
        for (Chunk c : chunks) {
            if (address >= c.base() && address < c.end()) {
                long start = (address - c.base()) / PAGE;
                if ((address - c.base()) % PAGE != 0 || size <= 0 || start + n > c.pages()
                        || c.used().nextClearBit((int) start) < start + n) {
                    throw new ErrnoException(Errno.EINVAL, String.format("gen_pool_free: %#x+%#x is not allocated", address, size));
                }
                c.used().clear((int) start, (int) (start + n));
                freePages += n;
                return;
            }
        }
        throw new ErrnoException(Errno.EINVAL, String.format("gen_pool_free: %#x is in no range of this pool", address));
    }

    @Override
    public synchronized String toString() {
        return "GenPool[" + freePages * PAGE + "/" + totalPages * PAGE + " bytes free, " + chunks.size() + " range(s)]";
    }
}
