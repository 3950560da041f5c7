package dev.dmaplane.dmaengine;

import org.osgi.annotation.versioning.ConsumerType;

import java.util.function.Consumer;

/**
 * {@code struct dma_async_tx_descriptor} ({@code include/linux/dmaengine.h}): a prepared transaction, implemented
 * by the channel's driver. Set its callback, then {@link #submit()} it once; it runs after
 * {@link DmaChannel#issuePending()}.
 */
@ConsumerType
public interface DmaTxDescriptor {
    /**
     * {@code callback_result}: called once when the transaction ends, if it was prepared with
     * {@link DmaChannel#PREP_INTERRUPT}, on a driver thread, with its result; must not block. {@code EINVAL} after
     * {@link #submit()}.
     */
    void setCallback(Consumer<DmaTxResult> callback);

    /**
     * {@code dmaengine_submit}: queues the transaction on its channel and returns its cookie, positive and
     * increasing per channel. {@code EINVAL} if submitted before, {@code ENODEV} once the channel is gone.
     */
    long submit();
}
