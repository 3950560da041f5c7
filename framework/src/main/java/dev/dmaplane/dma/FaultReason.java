package dev.dmaplane.dma;

/** Why a device memory transaction was refused. */
public enum FaultReason {
    /** The IOMMU domain has no translation for the address (DMAR "PTE not present"). */
    NOT_MAPPED,
    /** The translation exists but forbids the access, e.g. a write to a read-only mapping. */
    PERMISSION,
    /** The group is attached to a blocking domain. */
    BLOCKED,
    /** The address is outside the domain's aperture or beyond the address bits the device drives. */
    OUT_OF_RANGE,
    /** The device's Bus Master Enable bit is clear. */
    BUS_MASTER_DISABLED,
    /** The device has left its bus. */
    DEVICE_GONE,
    /** An AtomicOp at an address that is not 8-byte aligned. */
    MISALIGNED,
    /**
     * Caught by dma-debug: a pass-through access outside every live DMA API mapping, or a request the fabric routes to
     * a peer through a bus-address window ({@link DmaApi#mapPeer}) that was revoked or unmapped.
     */
    DEBUG_UNMAPPED,
    /** Caught by dma-debug: a pass-through or peer bus-address write into a {@code DMA_TO_DEVICE} mapping. */
    DEBUG_READ_ONLY,
    /** A switch routed the request where no function decodes it (PCIe Unsupported Request); see {@link PeerRouter}. */
    UNSUPPORTED_REQUEST
}
