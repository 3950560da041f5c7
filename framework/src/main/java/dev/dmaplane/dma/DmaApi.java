package dev.dmaplane.dma;

/**
 * The DMA API of one device ({@code Documentation/core-api/dma-api.rst}): streaming mappings of host memory for
 * the device, sync points, coherent allocations, and the device's own view of memory ({@link #busMaster()}).
 * Bus addresses are IOVAs when the device sits in a translating IOMMU domain, physical addresses otherwise.
 */
public interface DmaApi {
    /** The device's name. */
    String deviceName();

    /** The device's DMA addressing mask ({@code dma_get_mask}); all bus addresses handed out fit in it. */
    long dmaMask();

    /**
     * Sets the addressing mask ({@code dma_set_mask_and_coherent}).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EIO} if the mask is narrower than 32 bits (the kernel's
     *                                           {@code dma_supported} refusal), {@code EINVAL} if it is not of the
     *                                           form {@code 2^n - 1}
     */
    void setDmaMask(long mask);

    /** Largest segment {@link #mapSg} merges into ({@code dma_get_max_seg_size}); 64 KiB until the driver sets it. */
    long maxSegmentSize();

    /** Sets the largest merged segment ({@code dma_set_max_seg_size}); 4 KiB to 2 GiB - 1. */
    void setMaxSegmentSize(long size);

    /**
     * Maps {@code size} bytes of physically contiguous host memory at {@code physAddr} for the device
     * ({@code dma_map_single}/{@code dma_map_page}).
     *
     * @return the bus address of the first byte
     */
    long mapSingle(long physAddr, long size, DmaDirection direction);

    /** Unmaps what {@link #mapSingle} returned; size and direction must match the mapping ({@code dma_unmap_single}). */
    void unmapSingle(long dmaAddress, long size, DmaDirection direction);

    /** Maps a scatter-gather table; contiguous IOVA is merged into fewer segments ({@code dma_map_sgtable}). */
    MappedSg mapSg(SgTable table, DmaDirection direction);

    /** Unmaps a table {@link #mapSg} returned, with the direction it was mapped for ({@code dma_unmap_sgtable}). */
    void unmapSg(MappedSg mapped, DmaDirection direction);

    /**
     * Takes the device's access to a live scatter-gather mapping away without ending the mapping: its IOMMU
     * translations are removed at once (in pass-through mode its dma-debug access window is closed), but its bus
     * addresses stay reserved and its bookkeeping stays until the owner calls {@link #unmapSg}, which then frees
     * them and is not a double unmap. A device access into a revoked mapping faults, and dma-debug reports it as
     * {@link DmaDebugReport.Kind#ACCESS_REVOKED} with {@code reason} and the site that made the mapping.
     * <p>
     * The kernel has no single call for this: it is what a dma-buf exporter relies on when the backing of a
     * buffer moves or is revoked while an importer still holds a mapping of the old location (the IOVA cannot be
     * handed out again before the importer unmaps, so a late access can never land in someone else's memory).
     * Without an IOMMU and without dma-debug nothing can stop the device, as on real hardware.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a table the device has not mapped (reported as
     *                                           {@code dma_unmap_sg} misuse would be), a direction other than the
     *                                           mapping's, or a mapping already revoked; nothing changes then
     */
    void revokeSg(MappedSg mapped, DmaDirection direction, String reason);

    /** Gives the buffer back to the CPU after device writes ({@code dma_sync_single_for_cpu}). */
    void syncSingleForCpu(long dmaAddress, long size, DmaDirection direction);

    /** Gives the buffer to the device after CPU writes ({@code dma_sync_single_for_device}). */
    void syncSingleForDevice(long dmaAddress, long size, DmaDirection direction);

    /** {@code dma_sync_sgtable_for_cpu}. */
    void syncSgForCpu(MappedSg mapped, DmaDirection direction);

    /** {@code dma_sync_sgtable_for_device}. */
    void syncSgForDevice(MappedSg mapped, DmaDirection direction);

    /**
     * Maps {@code size} bytes of another device's memory — a BAR region at physical address {@code physAddr} — for
     * this device ({@code dma_map_resource}): an IOVA in the device's DMA domain, or the physical address itself in
     * pass-through, where it must fit the DMA mask since resources are never bounced. Tracked by dma-debug like any
     * mapping; the device then reaches the peer through the root complex.
     *
     * @return the bus address of the first byte
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} if the range is host RAM (map that with
     *                                           {@link #mapSingle}) or the size or direction is bad, {@code EFAULT}
     *                                           if no device memory decodes the whole range, {@code EIO} if it is
     *                                           beyond the DMA mask in pass-through
     */
    long mapResource(long physAddr, long size, DmaDirection direction);

    /** Unmaps what {@link #mapResource} returned; size and direction must match ({@code dma_unmap_resource}). */
    void unmapResource(long dmaAddress, long size, DmaDirection direction);

    /** Allocates zeroed memory both CPU and device see coherently ({@code dma_alloc_coherent}), at most 2 MiB. */
    CoherentBuffer allocCoherent(long size);

    /** Frees a coherent allocation ({@code dma_free_coherent}); its CPU view is unusable afterwards. */
    void freeCoherent(CoherentBuffer buffer);

    /** The device's memory accesses, translated through its IOMMU domain. */
    BusMaster busMaster();
}
