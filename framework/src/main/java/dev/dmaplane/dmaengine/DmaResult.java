package dev.dmaplane.dmaengine;

/** {@code enum dmaengine_tx_result} ({@code include/linux/dmaengine.h}): how a transaction ended, for its callback. */
public enum DmaResult {
    /** {@code DMA_TRANS_NOERROR}. */
    NOERROR,
    /** {@code DMA_TRANS_READ_FAILED}: the source could not be read. */
    READ_FAILED,
    /** {@code DMA_TRANS_WRITE_FAILED}: the destination could not be written. */
    WRITE_FAILED,
    /** {@code DMA_TRANS_ABORTED}: terminated, or failed for another reason. */
    ABORTED
}
