package dev.dmaplane.dmaengine;

/** {@code enum dma_status} ({@code include/linux/dmaengine.h}): what {@link DmaChannel#txStatus} reports for a cookie. */
public enum DmaStatus {
    /** {@code DMA_COMPLETE}: the transaction ended without error. */
    COMPLETE,
    /** {@code DMA_IN_PROGRESS}: submitted and not yet ended (issued or not). */
    IN_PROGRESS,
    /** {@code DMA_ERROR}: the transaction failed or was aborted. */
    ERROR
}
