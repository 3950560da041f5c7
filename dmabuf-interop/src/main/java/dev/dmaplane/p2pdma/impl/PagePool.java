package dev.dmaplane.p2pdma.impl;

import dev.dmaplane.genalloc.GenPool;
import dev.dmaplane.pci.Bar;

import java.util.ArrayList;
import java.util.List;

/**
 * p2pmem's {@code gen_pool}: BAR ranges added to a {@link GenPool} by bus address, each with the boundary of one
 * chunk of device memory ({@link Bar.Memory#CHUNK_SIZE}, or the whole BAR when smaller), so a run of at most one
 * chunk never straddles two and the CPU gets one segment for it. BARs are naturally aligned, so a boundary on bus
 * addresses is one on BAR offsets. Not thread-safe beyond the pool itself: the owner serialises access.
 */
final class PagePool {
    static final long PAGE = GenPool.PAGE;

    /** A placed allocation: the BAR it lies in and its bus address. */
    record Placement(Bar bar, long busAddress) {
    }

    private record Range(Bar bar, long busBase, long size) {
        boolean contains(long busAddress) {
            return busAddress >= busBase && busAddress - busBase < size;
        }
    }

    private final GenPool pool = new GenPool();
    private final List<Range> ranges = new ArrayList<>();

    /** Adds {@code size} bytes of {@code bar} from {@code barOffset}, both page-aligned ({@code gen_pool_add}). */
    void add(Bar bar, long barOffset, long size) {
        long busBase = bar.address() + barOffset;
        pool.add(busBase, size, Math.min(Bar.Memory.CHUNK_SIZE, bar.size()));
        ranges.add(new Range(bar, busBase, size));
    }

    /** Whether {@code [barOffset, barOffset + size)} of {@code bar} overlaps a range already added. */
    boolean overlaps(Bar bar, long barOffset, long size) {
        return pool.overlaps(bar.address() + barOffset, size);
    }

    long totalBytes() {
        return pool.size();
    }

    long freeBytes() {
        return pool.avail();
    }

    /** Pages {@code size} bytes occupy. */
    static long pagesFor(long size) {
        return GenPool.pagesFor(size);
    }

    /** First fit of {@code pagesFor(size)} free pages, or null when no free run is large enough. */
    Placement alloc(long size) {
        long at = pool.alloc(size);
        if (at < 0) {
            return null;
        }
        for (Range r : ranges) {
            if (r.contains(at)) {
                return new Placement(r.bar(), at);
            }
        }
        pool.free(at, size);
        throw new IllegalStateException(String.format("gen_pool handed out %#x, in no BAR range added", at));
    }

    /** Returns the pages of an allocation of {@code size} bytes at {@code busAddress} ({@code gen_pool_free}). */
    void free(long busAddress, long size) {
        pool.free(busAddress, size);
    }
}
