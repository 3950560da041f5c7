package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.mem.HostMemory;

import java.lang.foreign.MemorySegment;

/**
 * A test buffer of ordinary host pages ({@code alloc_pages}, what dmatest's {@code kmalloc} returns): physically
 * contiguous, naturally aligned, zeroed, the CPU's view through {@link #cpu()}. It is streaming-mapped for the
 * device per transfer, as dmatest maps its buffers with {@code dma_map_page}.
 */
final class HostBuffer implements AutoCloseable {
    private final HostMemory memory;
    private final long pfn;
    private final long size;
    private boolean freed;

    private HostBuffer(HostMemory memory, long pfn, long size) {
        this.memory = memory;
        this.pfn = pfn;
        this.size = size;
    }

    /** Allocates {@code 2^order} pages. */
    static HostBuffer allocate(HostMemory memory, int order) {
        long pfn = memory.allocPages(order);
        return new HostBuffer(memory, pfn, HostMemory.PAGE_SIZE << order);
    }

    /** Physical address of the first byte. */
    long phys() {
        return pfn << HostMemory.PAGE_SHIFT;
    }

    long size() {
        return size;
    }

    /** The CPU's view. */
    MemorySegment cpu() {
        return memory.slice(phys(), size);
    }

    /** Gives the pages back ({@code __free_pages}). Idempotent. */
    @Override
    public void close() {
        if (!freed) {
            freed = true;
            memory.putPage(pfn);
        }
    }
}
