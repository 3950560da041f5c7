package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Bar;

import java.lang.foreign.MemorySegment;
import java.util.BitSet;

import static dev.dmaplane.driver.gpu.model.GpuRegs.PAGE_SIZE;

/**
 * The VRAM the driver keeps for page tables (amdgpu's page-table BOs, here one reserved range at the top of the
 * CPU-visible window), handed out in zeroed 4 KiB pages by a bitmap, first fit ({@code lib/bitmap.c}
 * {@code bitmap_find_next_zero_area}). Thread-safe.
 */
final class PageTablePool {
    private final Bar.Memory window;
    private final long base;
    private final int pages;
    private final BitSet used;

    PageTablePool(Bar.Memory window, long base, long size) {
        ErrnoException.check(base % PAGE_SIZE == 0 && size % PAGE_SIZE == 0 && size > 0
                && base + size <= window.size(), Errno.EINVAL, String.format(
                "page-table pool %#x+%#x is not whole pages inside the %#x-byte VRAM window", base, size,
                window.size()));
        this.window = window;
        this.base = base;
        this.pages = (int) (size / PAGE_SIZE);
        this.used = new BitSet(pages);
    }

    long base() {
        return base;
    }

    long size() {
        return pages * PAGE_SIZE;
    }

    /** {@code count} contiguous zeroed pages aligned to {@code count} pages; their VRAM offset. {@code ENOMEM} if full. */
    synchronized long alloc(int count) {
        for (int i = 0; i + count <= pages; i += count) {
            int clear = used.nextSetBit(i);
            if (clear < 0 || clear >= i + count) {
                used.set(i, i + count);
                long at = base + i * PAGE_SIZE;
                window.write(at, MemorySegment.ofArray(new byte[(int) (count * PAGE_SIZE)]));
                return at;
            }
        }
        throw new ErrnoException(Errno.ENOMEM, "page-table pool of " + pages + " pages has no " + count
                + " free contiguous pages");
    }

    synchronized void free(long at, int count) {
        int i = (int) ((at - base) / PAGE_SIZE);
        ErrnoException.check(at >= base && (at - base) % PAGE_SIZE == 0 && i + count <= pages
                && used.get(i, i + count).cardinality() == count, Errno.EINVAL, String.format(
                "page-table pages %#x+%d were not allocated from the pool", at, count));
        used.clear(i, i + count);
    }

    synchronized int usedPages() {
        return used.cardinality();
    }
}
