package dev.dmaplane.dma;

/** The direction of a streaming DMA mapping ({@code enum dma_data_direction}). */
public enum DmaDirection {
    /** Device may read and write ({@code DMA_BIDIRECTIONAL}). */
    BIDIRECTIONAL(true, true),
    /** Device only reads: the IOMMU maps it read-only ({@code DMA_TO_DEVICE}). */
    TO_DEVICE(true, false),
    /** Device only writes ({@code DMA_FROM_DEVICE}); the IOMMU mapping is write-only where supported, here read+write as on x86. */
    FROM_DEVICE(true, true),
    /** Not a valid direction for mapping; dma-debug rejects it ({@code DMA_NONE}). */
    NONE(false, false);

    private final boolean deviceReads;
    private final boolean deviceWrites;

    DmaDirection(boolean deviceReads, boolean deviceWrites) {
        this.deviceReads = deviceReads;
        this.deviceWrites = deviceWrites;
    }

    /** Whether the IOMMU mapping lets the device read. */
    public boolean deviceReads() {
        return deviceReads;
    }

    /** Whether the IOMMU mapping lets the device write. */
    public boolean deviceWrites() {
        return deviceWrites;
    }
}
