package dev.dmaplane.rdma.spi;

import org.osgi.annotation.versioning.ProviderType;

/**
 * A memory region as the provider sees it: keys, range, access, and its translation. A pinned region is
 * described by DMA blocks of {@link #pageSize()} bytes ({@code rdma_umem_for_each_dma_block}: what a hardware
 * HCA writes into its translation table); an on-demand region has no fixed blocks and is reached through
 * {@link MemoryAccess}, which faults its pages in.
 */
@ProviderType
public interface HwMr extends HwObject {
    HwPd pd();

    int lkey();

    int rkey();

    long addr();

    long iova();

    long length();

    /** {@link dev.dmaplane.rdma.verbs.Access} flags. */
    int access();

    /** The translation page size ({@code ib_umem_find_best_pgsz}); {@code PAGE_SIZE} for on-demand regions. */
    long pageSize();

    boolean isOnDemand();

    /**
     * Whether the region's STag is valid ({@code stag_valid} of siw's {@code struct siw_mem}, rxe's
     * {@code RXE_MR_STATE_VALID}): true from registration, false once a LOCAL_INV or SEND_WITH_INV invalidated it on
     * a provider that {@link RdmaProvider#invalidatesRegions() invalidates regions}, and once deregistration began.
     * A provider that explains a refused access (siw's TERMINATE codes) looks at it first, as {@code siw_check_mem}
     * does.
     */
    boolean isStagValid();

    /**
     * Bus address of each {@link #pageSize()} block from {@code iova} rounded down to the page size, in order; the
     * HCA reaches {@code iova + off} at {@code dmaBlocks()[k] + (that address mod pageSize)} with
     * {@code k = ((iova + off) >> log2(pageSize)) - (iova >> log2(pageSize))}. Empty for on-demand and dma-buf
     * regions (a dma-buf's mapping changes when its exporter moves it).
     */
    long[] dmaBlocks();
}
