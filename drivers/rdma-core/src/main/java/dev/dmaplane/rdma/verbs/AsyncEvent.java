package dev.dmaplane.rdma.verbs;

import org.osgi.annotation.versioning.ProviderType;

import java.util.Optional;

/**
 * An asynchronous event ({@code struct ibv_async_event} from {@code ibv_get_async_event}). Affiliated events
 * name a QP, CQ or SRQ, which cannot be destroyed until the event is acknowledged; port events name the port.
 */
@ProviderType
public interface AsyncEvent {
    EventType type();

    Optional<QueuePair> qp();

    Optional<CompletionQueue> cq();

    Optional<SharedReceiveQueue> srq();

    /** The port of a port event, else 0. */
    int portNum();

    /** {@code ibv_ack_async_event}. Idempotent. */
    void ack();
}
