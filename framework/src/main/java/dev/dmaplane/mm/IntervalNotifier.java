package dev.dmaplane.mm;

import org.osgi.annotation.versioning.ConsumerType;

/**
 * The callback of an interval notifier ({@code struct mmu_interval_notifier_ops}, see
 * {@code Documentation/mm/hmm.rst}): called before pages of the watched range lose their mapping, so a device
 * mirroring them stops using them. Runs in the invalidating thread with the address space's locks held, as the
 * kernel runs it under {@code mmap_lock} or {@code i_mmap_rwsem}: it may take the driver's own lock and call
 * {@link IntervalSubscription#readRetry} or unpin pages, but must not call into the {@link AddressSpace} or the
 * file system. It cannot veto the invalidation; an exception it throws is traced and otherwise ignored.
 */
@ConsumerType
@FunctionalInterface
public interface IntervalNotifier {
    /**
     * @param range  the invalidated range, which overlaps the watched one
     * @param reason why
     * @param seq    the new sequence number; the subscription already reports it, so a
     *               {@link IntervalSubscription#readRetry} that races with this call answers true
     */
    void invalidate(MmuRange range, InvalidateReason reason, long seq);
}
