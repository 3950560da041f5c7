package dev.dmaplane.rdma.impl;

import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.List;

/**
 * User memory behind a memory region ({@code struct ib_umem}): how its bytes are reached by the HCA. Three kinds
 * exist: {@link PinnedUserMemory} ({@code ib_umem_get}: pinned long-term, one DMA mapping),
 * {@link OdpUserMemory} ({@code ib_umem_odp}: nothing pinned, pages faulted in and mapped on access, unmapped by
 * the interval notifier) and {@link DmabufUserMemory} ({@code ib_umem_dmabuf}: an attachment to a dma-buf, mapped
 * under the reservation lock, unmapped by {@code move_notify} like an ODP invalidation and mapped again on the next
 * access).
 *
 * <p>{@link #translate} runs under the region's read lock; {@link #release()} under its write lock, except what
 * must happen without it (see each kind: {@link #detach()}).
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
     *
     * @throws ErrnoException {@code EFAULT} for a span not inside the region ({@link #checkSpan}), before any look-up
     */
    abstract List<DmaSegment> translate(long offset, long len);

    /**
     * Refuses {@code [offset, offset + len)} unless it lies inside {@code [0, length)}, compared unsigned: the
     * translation's own bound, below the key's range check ({@code mr_check_range}), so that no offset ever
     * indexes a table out of range or reaches memory outside the region.
     *
     * @throws ErrnoException {@code EFAULT} naming the span
     */
    final void checkSpan(long offset, long len) {
        if (!new IovaRange(0, length).covers(offset, len)) {
            throw new ErrnoException(Errno.EFAULT, "offset 0x" + Long.toHexString(offset) + "+0x" + Long.toHexString(len)
                    + " is outside the " + length + " bytes of the region at iova 0x" + Long.toHexString(iova));
        }
    }

    /**
     * What must happen before {@link #release()} without the region's lock held (stopping a notifier; for a dma-buf,
     * everything, since the reservation lock comes before the region's).
     */
    void detach() {
    }

    /** Unmaps and unpins (pinned memory: once the last retained lease of it closed too). Must succeed. */
    abstract void release();
}
