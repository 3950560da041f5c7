package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.genalloc.GenPool;
import dev.dmaplane.pci.Bar;

import java.lang.foreign.MemorySegment;

import static dev.dmaplane.driver.gpu.model.GpuRegs.PAGE_SIZE;

/**
 * The VRAM the driver keeps for page tables (amdgpu's page-table BOs, here one reserved range at the top of the
 * CPU-visible window), handed out in zeroed 4 KiB pages by the shared {@link GenPool} ({@code lib/genalloc.c},
 * first fit). Thread-safe.
 */
final class PageTablePool {
    private final Bar.Memory window;
    private final long base;
    private final long size;
    private final GenPool pool = new GenPool();

    PageTablePool(Bar.Memory window, long base, long size) {
        ErrnoException.check(base % PAGE_SIZE == 0 && size % PAGE_SIZE == 0 && size > 0
                && base + size <= window.size(), Errno.EINVAL, String.format(
                "page-table pool %#x+%#x is not whole pages inside the %#x-byte VRAM window", base, size,
                window.size()));
        this.window = window;
        this.base = base;
        this.size = size;
        pool.add(base, size, 0);
    }

    long base() {
        return base;
    }

    long size() {
        return size;
    }

    /** {@code count} contiguous zeroed pages; their VRAM offset. {@code ENOMEM} when the pool has no such run. */
    long alloc(int count) {
        long at = pool.alloc(count * PAGE_SIZE);
        ErrnoException.check(at >= 0, Errno.ENOMEM, "page-table pool of " + size / PAGE_SIZE + " pages has no "
                + count + " free contiguous pages");
        window.write(at, MemorySegment.ofArray(new byte[(int) (count * PAGE_SIZE)]));
        return at;
    }

    void free(long at, int count) {
        pool.free(at, count * PAGE_SIZE);
    }

    int usedPages() {
        return (int) ((size - pool.avail()) / PAGE_SIZE);
    }
}
