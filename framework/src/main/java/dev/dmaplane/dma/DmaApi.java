package dev.dmaplane.dma;

import org.osgi.annotation.versioning.ProviderType;

/**
 * The DMA API of one device ({@code Documentation/core-api/dma-api.rst}): streaming mappings of host memory for
 * the device, sync points, coherent allocations, and the device's own view of memory ({@link #busMaster()}).
 * Bus addresses are IOVAs when the device sits in a translating IOMMU domain, physical addresses otherwise.
 */
@ProviderType
public interface DmaApi {
    /** The device's name. */
    String deviceName();

    /** The device's DMA addressing mask ({@code dma_get_mask}); all bus addresses handed out fit in it. */
    long dmaMask();

    /**
     * Sets the addressing mask ({@code dma_set_mask_and_coherent}): what the DMA API may hand the device from now on
     * (mappings, coherent allocations, the bounce decision). As {@code dma_supported} it checks what the platform can
     * serve, not the device: the device's own width ({@link dev.dmaplane.device.Device#dmaAddressBits}) is hardware, and
     * a mask wider than it is the driver's bug, which shows when the device is handed an address it cannot drive: the
     * bus master refuses that request and traces the fault.
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
     * The boundary no segment may cross, as a mask ({@code dma_get_seg_boundary}): a segment's first and last bus
     * address agree in every bit above it. All ones (no boundary) until the driver sets one.
     */
    long segmentBoundary();

    /**
     * Sets the segment boundary mask ({@code dma_set_seg_boundary}): {@link #mapSg} merges no segment across it, and
     * dma-debug reports a mapped segment that crosses it.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} unless the mask is {@code 2^n - 1} of at least a page
     *                                           ({@code 0xfff}) or all ones
     */
    void setSegmentBoundary(long mask);

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

    /**
     * {@link #revokeSg} for a {@link #mapResource} mapping: the IOMMU translation goes at once (in pass-through the
     * dma-debug window closes), the IOVA stays reserved until {@link #unmapResource}, and an access in between
     * faults and is reported as {@link DmaDebugReport.Kind#ACCESS_REVOKED} with {@code reason} and the mapping site.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} as {@link #unmapResource} would refuse the same
     *                                           arguments, or for a mapping already revoked; nothing changes then
     */
    void revokeResource(long dmaAddress, long size, DmaDirection direction, String reason);

    /**
     * Hands the device {@code size} bytes of a peer's memory at PCI bus address {@code busAddr} that the fabric below
     * the root complex routes to that peer, so the device uses the bus address itself: the
     * {@code PCI_P2PDMA_MAP_BUS_ADDR} branch of {@code dma_map_sg} ({@code pci_p2pdma_bus_addr_map}). Nothing is
     * mapped and no IOMMU is involved; the range is tracked like any mapping (site, direction, the leak check at
     * unbind) until {@link #unmapPeer}.
     * <p>
     * Since the IOMMU never sees such accesses, only dma-debug can catch a device that keeps using the address: while
     * it is on, every request the fabric routes to a peer is checked against the windows this device was handed.
     * An access into a window revoked with {@link #revokePeer} is refused and reported as
     * {@link DmaDebugReport.Kind#ACCESS_REVOKED}, one into a window already unmapped (or running past a live one) as
     * {@link DmaDebugReport.Kind#ACCESS_UNMAPPED}, a write into a {@code TO_DEVICE} window as
     * {@link DmaDebugReport.Kind#ACCESS_READ_ONLY}, each with the site that made the window; no byte moves. Peer
     * addresses the device was never handed this way are not checked. With dma-debug off nothing stops the device, as
     * on real hardware: a stale bus address reaches whatever the peer's memory holds now.
     *
     * @return {@code busAddr}
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a bad size or direction, for host RAM, or when the
     *                                           fabric does not route the whole range from this device to one peer
     *                                           (it goes to the root complex: use {@link #mapResource}),
     *                                           {@code EFAULT} if no device memory decodes the range,
     *                                           {@code ENODEV} once the device left. The DMA mask is not checked
     *                                           here (the bus-address branch of {@code dma_map_sg} does not either);
     *                                           a request beyond it is refused when the device makes it.
     */
    long mapPeer(long busAddr, long size, DmaDirection direction);

    /** Ends a window {@link #mapPeer} handed out; size and direction must match (the {@code dma_unmap_sg} of P2P pages). */
    void unmapPeer(long busAddr, long size, DmaDirection direction);

    /**
     * {@link #revokeSg} for a {@link #mapPeer} window: the window stays the device's until {@link #unmapPeer}, but with
     * dma-debug on every access through it is refused and reported as {@link DmaDebugReport.Kind#ACCESS_REVOKED}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} as {@link #unmapPeer} would refuse the same arguments, or
     *                                           for a window already revoked; nothing changes then
     */
    void revokePeer(long busAddr, long size, DmaDirection direction, String reason);

    /** Allocates zeroed memory both CPU and device see coherently ({@code dma_alloc_coherent}), at most 2 MiB. */
    CoherentBuffer allocCoherent(long size);

    /** Frees a coherent allocation ({@code dma_free_coherent}); its CPU view is unusable afterwards. */
    void freeCoherent(CoherentBuffer buffer);

    /** The device's memory accesses, translated through its IOMMU domain. */
    BusMaster busMaster();

    /**
     * The traffic the device's {@link #busMaster()} put on the bus since the device arrived: bytes by where they
     * landed (host RAM or a peer's BAR) and AtomicOps; refused requests count nothing. Take two readings and
     * {@link DmaTraffic#minus} them for the traffic in between.
     */
    DmaTraffic traffic();
}
