package dev.dmaplane.dmaengine;

/** {@code enum dma_transaction_type} ({@code include/linux/dmaengine.h}): the operations a channel can prepare. */
public enum DmaTransactionType {
    /** {@code DMA_MEMCPY}: {@link DmaChannel#prepMemcpy}. */
    MEMCPY,
    /** {@code DMA_MEMSET}: {@link DmaChannel#prepMemset}. */
    MEMSET
}
