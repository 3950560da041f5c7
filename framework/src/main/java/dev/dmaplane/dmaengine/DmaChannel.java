package dev.dmaplane.dmaengine;

import org.osgi.annotation.versioning.ConsumerType;

import java.util.Set;

/**
 * {@code struct dma_chan} ({@code include/linux/dmaengine.h}) with its {@code struct dma_device} operations,
 * implemented by a DMA controller's driver. A client prepares descriptors ({@code device_prep_dma_memcpy},
 * {@code device_prep_dma_memset}), submits them for cookies, starts them with {@link #issuePending()} and learns
 * their end from {@link #txStatus} or their callbacks. Transactions of one channel run in submission order.
 * Addresses are the client's DMA addresses of its mappings for the channel's device. Thread-safe.
 */
@ConsumerType
public interface DmaChannel {
    /** {@code DMA_PREP_INTERRUPT}: call the descriptor's callback when it ends. */
    int PREP_INTERRUPT = 1;
    /** {@code DMA_CTRL_ACK}: the client will not reuse the descriptor. */
    int CTRL_ACK = 2;

    /** {@code dma_chan_name}. */
    String name();

    /** The {@code cap_mask} of the channel's device. */
    Set<DmaTransactionType> capabilities();

    /**
     * {@code dmaengine_prep_dma_memcpy}: copies {@code len} bytes from {@code src} to {@code dst}. {@code EINVAL} for
     * a length that is not positive or above the channel's limit or unknown flags; {@code ENODEV} once the channel
     * is gone.
     */
    DmaTxDescriptor prepMemcpy(long dst, long src, long len, int flags);

    /**
     * {@code dmaengine_prep_dma_memset}: sets {@code len} bytes at {@code dst} to the low byte of {@code value}.
     * Errors as {@link #prepMemcpy}.
     */
    DmaTxDescriptor prepMemset(long dst, int value, long len, int flags);

    /** {@code dma_async_issue_pending}: starts every transaction submitted so far. */
    void issuePending();

    /**
     * {@code dmaengine_tx_status}: {@link DmaStatus#COMPLETE} once {@code cookie} ended without error, {@link
     * DmaStatus#ERROR} if it failed or was terminated, else {@link DmaStatus#IN_PROGRESS}. {@code EINVAL} for a cookie
     * this channel never returned.
     */
    DmaStatus txStatus(long cookie);

    /**
     * {@code dmaengine_terminate_async}: aborts every transaction submitted and not ended; their callbacks get
     * {@link DmaResult#ABORTED}. Callbacks may still run until {@link #synchronize()} returns.
     */
    void terminateAll();

    /**
     * {@code dmaengine_synchronize}: waits, bounded, until no transaction of the channel runs and no callback is
     * running; {@code ETIMEDOUT} if that does not happen in time.
     */
    void synchronize();
}
