package dev.dmaplane.rdma.impl;

import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SharedReceiveQueue;

import java.util.Optional;
import java.util.concurrent.atomic.AtomicBoolean;

/** One queued async event; reading it counts it as reported for its object, acknowledging it as acked. */
final class AsyncEventImpl implements AsyncEvent {
    private final EventType type;
    private final ObjectImpl element;
    private final int port;
    private final AtomicBoolean acked = new AtomicBoolean();

    AsyncEventImpl(EventType type, ObjectImpl element, int port) {
        this.type = type;
        this.element = element;
        this.port = port;
    }

    ObjectImpl element() {
        return element;
    }

    @Override
    public EventType type() {
        return type;
    }

    @Override
    public Optional<QueuePair> qp() {
        return element instanceof QueuePair q ? Optional.of(q) : Optional.empty();
    }

    @Override
    public Optional<CompletionQueue> cq() {
        return element instanceof CompletionQueue c ? Optional.of(c) : Optional.empty();
    }

    @Override
    public Optional<SharedReceiveQueue> srq() {
        return element instanceof SharedReceiveQueue s ? Optional.of(s) : Optional.empty();
    }

    @Override
    public int portNum() {
        return port;
    }

    @Override
    public void ack() {
        if (acked.compareAndSet(false, true) && element != null) {
            element.asyncEventAcked();
        }
    }

    @Override
    public String toString() {
        return "async event " + type + (element != null ? " on " + element : "") + (port > 0 ? " port " + port : "");
    }
}
