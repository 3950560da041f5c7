package dev.dmaplane.rdma.verbs;

import org.osgi.annotation.versioning.ProviderType;

import java.util.List;
import java.util.Optional;

/**
 * A completion queue ({@code ibv_create_cq}). More completions than {@link #cqe()} unpolled is an overrun: the
 * completion is lost, the CQ goes into error and a CQ_ERR async event is raised.
 */
@ProviderType
public interface CompletionQueue extends VerbsObject {
    /** Capacity. */
    int cqe();

    /** Device-wide CQ number ({@code cqn}). */
    int cqn();

    /** The channel completion events go to. */
    Optional<CompletionChannel> channel();

    /**
     * {@code ibv_poll_cq}: up to {@code max} completions, oldest first; empty when none. Still works after the
     * device went away, to drain the flushed completions.
     */
    List<WorkCompletion> poll(int max);

    /**
     * {@code ibv_req_notify_cq}: the next completion (or the next solicited or error one) raises one completion
     * event on the channel, then the CQ is disarmed.
     */
    void reqNotify(boolean solicitedOnly);

    /** {@code ibv_ack_cq_events}: {@code destroy} waits until every event delivered was acknowledged. */
    void ackEvents(int n);

    /**
     * {@code ibv_resize_cq}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} below the completions it holds or above max_cqe
     */
    void resize(int cqe);

    /** Completions waiting to be polled. */
    int pending();
}
