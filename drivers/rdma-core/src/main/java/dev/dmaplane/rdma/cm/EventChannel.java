package dev.dmaplane.rdma.cm;

import org.osgi.annotation.versioning.ProviderType;

import java.time.Duration;

/**
 * {@code struct rdma_event_channel} ({@code rdma_create_event_channel}): where the events of its ids queue, in the
 * order they happened. It opens the devices its ids use for the process it was made for ({@link CmId#verbs()}).
 */
@ProviderType
public interface EventChannel extends AutoCloseable {
    /**
     * {@code rdma_create_id}: a new id in port space {@code ps} (TCP: RC QPs; UDP: UD QPs).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a null port space, {@code EBADF} once closed
     */
    CmId createId(PortSpace ps);

    /**
     * {@code rdma_get_cm_event}: the next event, waiting at most {@code timeout}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code ETIMEDOUT} when none came in time, {@code EBADF} once closed,
     *                                           {@code EINTR} when the thread was interrupted
     */
    CmEvent getEvent(Duration timeout);

    /**
     * {@code rdma_destroy_event_channel}: destroys the ids still on it (as closing the ucma file does) and closes the
     * device contexts it opened. Idempotent.
     */
    @Override
    void close();
}
