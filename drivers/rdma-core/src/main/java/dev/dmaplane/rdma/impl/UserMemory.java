package dev.dmaplane.rdma.impl;

import dev.dmaplane.dma.DmaSegment;

import java.util.List;

/**
 * User memory behind a memory region ({@code struct ib_umem}): how its bytes are reached by the HCA. Two kinds
 * exist: {@link PinnedUserMemory} ({@code ib_umem_get}: pinned long-term, one DMA mapping) and
 * {@link OdpUserMemory} ({@code ib_umem_odp}: nothing pinned, pages faulted in and mapped on access, unmapped by
 * the interval notifier). A dma-buf region ({@code ib_umem_dmabuf}) is a third kind: attach to the exporter as a
 * dynamic importer, map the attachment under the reservation lock, and treat {@code move_notify} like an ODP
 * invalidation; it fits here without touching regions, keys or the data path.
 *
 * <p>{@link #translate} runs under the region's read lock; {@link #release()} under its write lock, except what
 * must happen without it (see each kind).
 */
abstract class UserMemory {
    final long addr;
    final long length;
    final long iova;

    UserMemory(long addr, long length, long iova) {
        this.addr = addr;
        this.length = length;
        this.iova = iova;
    }

    abstract boolean onDemand();

    /** The translation page size. */
    abstract long pageSize();

    /** The DMA blocks of a pinned region; empty for others. */
    abstract long[] dmaBlocks();

    /** Pages pinned for this memory. */
    abstract long pinnedPages();

    /** DMA mappings held for this memory now. */
    abstract int dmaMappings();

    /**
     * Bus ranges of {@code [offset, offset + len)} from the region's first byte. The caller holds the region's
     * read lock (pinned) or has made the pages present (on demand).
     */
    abstract List<DmaSegment> translate(long offset, long len);

    /** What must happen before {@link #release()} without the region's lock held (stopping a notifier). */
    void detach() {
    }

    /** Unmaps and unpins. Must succeed. */
    abstract void release();
}
