package dev.dmaplane.mm;

import org.osgi.annotation.versioning.ProviderType;

/**
 * A registered interval notifier ({@code struct mmu_interval_notifier}) with the collision-retry protocol of
 * {@code mm/mmu_notifier.c}: a driver calls {@link #readBegin()}, looks pages up (pins or faults them), then, under
 * the same lock its callback takes, calls {@link #readRetry} and starts over if an invalidation came in between.
 */
@ProviderType
public interface IntervalSubscription extends AutoCloseable {
    /** First watched address. */
    long start();

    /** First address after the watched range. */
    long end();

    /**
     * {@code mmu_interval_read_begin}: the current sequence number; waits first while an invalidation that
     * covers this subscription is in progress, so the number returned is never one already invalidated.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EDEADLK} when called from this subscription's own callback
     *                                           (the kernel would sleep forever there)
     */
    long readBegin();

    /** {@code mmu_interval_read_retry}: whether an invalidation started since {@code seq} was read. */
    boolean readRetry(long seq);

    /**
     * {@code mmu_interval_notifier_remove}: stops callbacks, waiting for a running invalidation of this
     * subscription to end. Closing twice is harmless.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EDEADLK} when called from inside an invalidation callback
     *                                           that covers this subscription
     */
    @Override
    void close();
}
