package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.dmaengine.DmaChannel;
import dev.dmaplane.dmaengine.DmaResult;
import dev.dmaplane.dmaengine.DmaTxDescriptor;
import dev.dmaplane.dmaengine.DmaTxResult;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * One transaction at a time on a dmaengine channel, as {@code dmatest_func} runs it
 * ({@code Documentation/driver-api/dmaengine/client.rst}): prepare with {@code DMA_PREP_INTERRUPT}, set
 * {@code callback_result}, {@code dmaengine_submit}, {@code dma_async_issue_pending}, then a bounded wait for the
 * callback; on timeout {@code dmaengine_terminate_sync} and {@code ETIMEDOUT}.
 */
final class ChannelClient {
    private final DmaChannel channel;
    private final Duration timeout;

    ChannelClient(DmaChannel channel, Duration timeout) {
        this.channel = channel;
        this.timeout = timeout;
    }

    /** {@code dmaengine_prep_dma_memcpy} and its run. */
    DmaResult memcpy(long dst, long src, long len) {
        return run(channel.prepMemcpy(dst, src, len, DmaChannel.PREP_INTERRUPT | DmaChannel.CTRL_ACK), "memcpy");
    }

    /** {@code dmaengine_prep_dma_memset} and its run. */
    DmaResult memset(long dst, int value, long len) {
        return run(channel.prepMemset(dst, value, len, DmaChannel.PREP_INTERRUPT | DmaChannel.CTRL_ACK), "memset");
    }

    /** {@code dmaengine_terminate_sync}: nothing of this client runs or calls back after it returns. */
    void terminateSync() {
        channel.terminateAll();
        channel.synchronize();
    }

    String name() {
        return channel.name();
    }

    private DmaResult run(DmaTxDescriptor tx, String what) {
        CompletableFuture<DmaTxResult> done = new CompletableFuture<>();
        tx.setCallback(done::complete);
        long cookie = tx.submit();
        channel.issuePending();
        try {
            return done.get(timeout.toMillis(), TimeUnit.MILLISECONDS).result();
        } catch (TimeoutException e) {
            terminateSync();
            throw new ErrnoException(Errno.ETIMEDOUT, what + " cookie " + cookie + " on " + channel.name()
                    + " did not end within " + timeout);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            terminateSync();
            throw new ErrnoException(Errno.EINTR, what + " cookie " + cookie + " on " + channel.name()
                    + ": interrupted while waiting for its callback");
        } catch (ExecutionException e) {
            throw new ErrnoException(Errno.EIO, what + " cookie " + cookie + " on " + channel.name()
                    + ": its callback failed: " + e.getCause(), e.getCause());
        }
    }
}
