package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.CompletionChannel;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UContext;

import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.LinkedBlockingDeque;
import java.util.concurrent.TimeUnit;

/** A completion channel: the event queue armed CQs report to ({@code ib_uverbs_completion_event_file}). */
final class ChannelImpl extends ObjectImpl implements CompletionChannel {
    private final LinkedBlockingDeque<CqImpl> queue = new LinkedBlockingDeque<>();

    private ChannelImpl(ContextImpl ctx) {
        super(ctx, "comp_channel");
    }

    static ChannelImpl create(ContextImpl ctx) {
        try (UContext.Call c = ctx.enter()) {
            return ctx.register(new ChannelImpl(ctx));
        }
    }

    void deliver(CqImpl cq) {
        queue.add(cq);
    }

    void purge(CqImpl cq) {
        queue.removeIf(c -> c == cq);
    }

    private void checkReadable() {
        RemoveReason r = removedBy();
        if (r == RemoveReason.DESTROY || r == RemoveReason.CLOSE) {
            throw new ErrnoException(Errno.EBADF, "completion channel " + handle() + " was destroyed");
        }
    }

    @Override
    public Optional<CompletionQueue> pollCqEvent() {
        checkReadable();
        return Optional.ofNullable(reported(queue.poll()));
    }

    @Override
    public Optional<CompletionQueue> getCqEvent(Duration timeout) {
        checkReadable();
        try {
            return Optional.ofNullable(reported(queue.poll(timeout.toNanos(), TimeUnit.NANOSECONDS)));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, "interrupted waiting for a completion event");
        }
    }

    private CqImpl reported(CqImpl cq) {
        if (cq != null) {
            cq.compEventReported();
        }
        return cq;
    }

    @Override
    void release(RemoveReason reason) {
        queue.clear();
    }

    @Override
    Map<String, String> resAttrs() {
        return Map.of("events", Integer.toString(queue.size()));
    }
}
