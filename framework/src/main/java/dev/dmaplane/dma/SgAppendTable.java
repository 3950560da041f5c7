package dev.dmaplane.dma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.ArrayList;
import java.util.List;

/**
 * Address runs built by appending ranges in order, each merged into the run before it when it continues that run
 * and the merged run stays within the maximum segment size (and, for device segments, inside one window of the
 * segment boundary), as {@code sg_alloc_append_table_from_pages} merges physically contiguous pages up to
 * {@code max_segment} ({@code lib/scatterlist.c}) and {@code iommu_dma_map_sg} honours {@code seg_boundary_mask}.
 *
 * @param <T> what one run of the list is: a CPU-side {@link SgEntry} or a device-side {@link DmaSegment}
 */
public final class SgAppendTable<T> {
    /** Makes one run of the list from its first address and its length. */
    @FunctionalInterface
    public interface Run<T> {
        T of(long start, long length);
    }

    private final long maxSegment;
    private final long boundaryMask;
    private final Run<T> run;
    private final List<T> runs = new ArrayList<>();
    private boolean open;
    private long start;
    private long length;

    private SgAppendTable(long maxSegment, long boundaryMask, Run<T> run) {
        if (maxSegment <= 0) {
            throw new ErrnoException(Errno.EINVAL, "max segment size must be > 0, not " + maxSegment);
        }
        if (boundaryMask != -1L && Long.bitCount(boundaryMask + 1) != 1) {
            throw new ErrnoException(Errno.EINVAL, "segment boundary mask 0x" + Long.toHexString(boundaryMask)
                    + " is not of the form 2^n - 1");
        }
        this.maxSegment = maxSegment;
        this.boundaryMask = boundaryMask;
        this.run = run;
    }

    /** Device-side segments of at most {@code maxSegment} bytes each, as {@code dma_map_sg} merges them. */
    public static SgAppendTable<DmaSegment> dmaSegments(long maxSegment) {
        return new SgAppendTable<>(maxSegment, -1L, DmaSegment::new);
    }

    /**
     * Device-side segments of at most {@code maxSegment} bytes each, none merged across a boundary of
     * {@code boundaryMask + 1} bytes ({@code dma_get_seg_boundary}; -1 for none).
     */
    public static SgAppendTable<DmaSegment> dmaSegments(long maxSegment, long boundaryMask) {
        return new SgAppendTable<>(maxSegment, boundaryMask, DmaSegment::new);
    }

    /** Device-side segments as long as the bus addresses continue: a device's view of a range. */
    public static SgAppendTable<DmaSegment> dmaSegments() {
        return new SgAppendTable<>(Long.MAX_VALUE, -1L, DmaSegment::new);
    }

    /** CPU-side entries of an {@link SgTable} as long as the physical addresses continue. */
    public static SgAppendTable<SgEntry> sgEntries() {
        return new SgAppendTable<>(Long.MAX_VALUE, -1L, SgEntry::new);
    }

    /** Appends {@code [start, start+length)}: it extends the last run if it continues it within the limits. */
    public void append(long start, long length) {
        if (length <= 0) {
            throw new ErrnoException(Errno.EINVAL, "run at 0x" + Long.toHexString(start) + " of length " + length + " must be > 0");
        }
        if (open && this.start + this.length == start && this.length <= maxSegment - length
                && ((this.start ^ (start + length - 1)) & ~boundaryMask) == 0) {
            this.length += length;
            return;
        }
        if (open) {
            runs.add(run.of(this.start, this.length));
        }
        open = true;
        this.start = start;
        this.length = length;
    }

    /** Closes the last run and returns every run in order, in a new list the caller owns; the builder is spent. */
    public List<T> toList() {
        if (open) {
            runs.add(run.of(start, length));
            open = false;
        }
        return runs;
    }
}
