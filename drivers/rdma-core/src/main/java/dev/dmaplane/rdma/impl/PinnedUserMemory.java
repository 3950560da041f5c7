package dev.dmaplane.rdma.impl;

import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.dma.SgAppendTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.PinFlags;
import dev.dmaplane.mm.PinnedPages;
import dev.dmaplane.rdma.verbs.Access;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.EnumSet;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * {@code ib_umem_get}: the range is pinned with {@code FOLL_LONGTERM} (plus {@code FOLL_WRITE} when the access
 * is writable, {@code ib_access_writable}), the pages become one scatter-gather table mapped
 * {@code DMA_BIDIRECTIONAL} through the HCA's DMA API, and the HCA's page size is chosen with
 * {@code ib_umem_find_best_pgsz}. Release unmaps, then unpins (marking the pages dirty when the HCA could write
 * them, as {@code __ib_umem_release} does). The region holds one reference and a retained lease one more
 * ({@link #reference}), as siw counts the users of its {@code siw_mem} ({@code siw_mem_put}): the memory is released
 * when the last of them lets go.
 */
final class PinnedUserMemory extends UserMemory {
    private static final Logger LOG = LoggerFactory.getLogger(PinnedUserMemory.class);

    private final DmaApi dma;
    private final PinnedPages pinned;
    private final MappedSg mapped;
    private final boolean writable;
    private final long pageSize;
    private final long[] blocks;
    private final int shift;
    /** The region's reference and one per retained lease; the memory is released when it drops to 0. */
    private final AtomicInteger refs = new AtomicInteger(1);

    private PinnedUserMemory(long addr, long length, long iova, DmaApi dma, PinnedPages pinned, MappedSg mapped,
                             boolean writable, long pageSize, long[] blocks) {
        super(addr, length, iova);
        this.dma = dma;
        this.pinned = pinned;
        this.mapped = mapped;
        this.writable = writable;
        this.pageSize = pageSize;
        this.blocks = blocks;
        this.shift = Long.numberOfTrailingZeros(pageSize);
    }

    /** Pins, maps and chooses the page size; on any failure nothing stays pinned or mapped. */
    static PinnedUserMemory get(AddressSpace mm, DmaApi dma, long addr, long length, long iova, int access,
                                long pgszBitmap) {
        boolean writable = Access.writable(access);
        PinnedPages p = mm.pin(addr, length, writable ? EnumSet.of(PinFlags.WRITE, PinFlags.LONGTERM)
                : EnumSet.of(PinFlags.LONGTERM));
        MappedSg m = null;
        try {
            m = dma.mapSg(p.toSgTable(), DmaDirection.BIDIRECTIONAL);
            long pgsz = PageSizes.best(m.segments(), length, pgszBitmap, iova);
            if (pgsz == 0) {
                throw new ErrnoException(Errno.EINVAL, "no page size of 0x" + Long.toHexString(pgszBitmap)
                        + " can translate IOVA 0x" + Long.toHexString(iova));
            }
            long[] blocks = PageSizes.blocks(m.segments(), length, pgsz, iova);
            return new PinnedUserMemory(addr, length, iova, dma, p, m, writable, pgsz, blocks);
        } catch (RuntimeException e) {
            if (m != null) {
                dma.unmapSg(m, DmaDirection.BIDIRECTIONAL);
            }
            p.unpin();
            throw e;
        }
    }

    @Override
    boolean onDemand() {
        return false;
    }

    @Override
    long pageSize() {
        return pageSize;
    }

    @Override
    long[] dmaBlocks() {
        return blocks.clone();
    }

    @Override
    long pinnedPages() {
        return pinned.isPinned() ? pinned.pageCount() : 0;
    }

    @Override
    int dmaMappings() {
        return pinned.isPinned() ? 1 : 0;
    }

    /** The HCA's view: through the block table, as its MTT would translate. */
    @Override
    List<DmaSegment> translate(long offset, long len) {
        checkSpan(offset, len);
        long va = iova + offset;
        long end = va + len;
        long base = iova >>> shift;
        long first = va & (pageSize - 1);
        if (first + len <= pageSize) { // inside one block: the common case of a packet
            return List.of(new DmaSegment(blocks[(int) ((va >>> shift) - base)] + first, len));
        }
        SgAppendTable<DmaSegment> out = SgAppendTable.dmaSegments();
        while (va < end) {
            long k = (va >>> shift) - base;
            long inBlock = va & (pageSize - 1);
            long n = Math.min(pageSize - inBlock, end - va);
            out.append(blocks[(int) k] + inBlock, n);
            va += n;
        }
        return List.copyOf(out.toList());
    }

    /**
     * One more reference to this memory ({@code siw_mem_get}), taken while a lease holds off its release; the returned
     * action drops it, once however often it runs.
     */
    Runnable reference() {
        refs.incrementAndGet();
        AtomicBoolean dropped = new AtomicBoolean();
        return () -> {
            if (dropped.compareAndSet(false, true)) {
                drop();
            }
        };
    }

    /** Drops the region's reference: unmapped and unpinned now, or when the last retained lease closes. */
    @Override
    void release() {
        drop();
    }

    private void drop() {
        if (refs.decrementAndGet() == 0) {
            unmapAndUnpin();
        }
    }

    private void unmapAndUnpin() {
        try {
            dma.unmapSg(mapped, DmaDirection.BIDIRECTIONAL);
        } catch (RuntimeException e) {
            LOG.error("{}: unmap of a memory region failed (device gone?); its mapping may leak", dma.deviceName(), e);
        }
        if (pinned.isPinned()) {
            if (writable) {
                pinned.unpinDirty();
            } else {
                pinned.unpin();
            }
        }
    }
}
