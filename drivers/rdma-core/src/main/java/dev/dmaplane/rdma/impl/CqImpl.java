package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwCq;
import dev.dmaplane.rdma.verbs.CompletionChannel;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.trace.Tracer;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UContext;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A completion queue: CQ memory the HCA writes and the consumer polls ({@link CqRing}), with the notification state
 * of {@code rxe_cq.c} ({@code rxe_cq_post}): an armed CQ raises one completion event for the next completion, or
 * the next solicited (or failed) one when armed solicited-only, then disarms. A completion that finds the CQ full is
 * lost, the CQ goes into error and CQ_ERR is raised; later completions are dropped. A poll reads CQ memory under the
 * CQ's poll lock only, as {@code ibv_poll_cq} reads a user-mapped queue: no call into the core or the driver,
 * unless the provider asks for one ({@link dev.dmaplane.rdma.spi.RdmaProvider#progressesOnPoll}).
 */
final class CqImpl extends ObjectImpl implements CompletionQueue, HwCq {
    private static final int NOTIFY_NONE = 0;
    private static final int NOTIFY_SOLICITED = 1;
    private static final int NOTIFY_NEXT = 2;

    private final int cqn;
    private final ChannelImpl channel;
    private final int compVector;
    /** The producers' lock (rxe's {@code cq_lock}): completions, notification and error state. */
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition acked = lock.newCondition();
    /** The pollers' lock (the provider library's, in {@code ibv_poll_cq}); taken after {@link #lock} when both are. */
    private final ReentrantLock pollLock = new ReentrantLock();
    /**
     * The CQ's memory; replaced by a resize. An empty CQ is polled by reading its two indices alone, so that pollers
     * spinning on empty CQs write nothing another CPU must see.
     */
    private volatile CqRing ring;
    private int capacity;
    private boolean errored;
    private int notify = NOTIFY_NONE;
    private int compReported;
    private int compAcked;

    private CqImpl(ContextImpl ctx, int cqn, int cqe, ChannelImpl channel, int compVector) {
        super(ctx, "cq", channel == null ? new ObjectImpl[0] : new ObjectImpl[]{channel});
        this.cqn = cqn;
        this.capacity = cqe;
        this.ring = new CqRing(cqe);
        this.channel = channel;
        this.compVector = compVector;
    }

    static CqImpl create(ContextImpl ctx, int cqe, CompletionChannel channel, int compVector) {
        DeviceImpl dev = ctx.dev;
        try (UContext.Call c = ctx.enter()) {
            if (cqe < 1 || cqe > dev.attr.maxCqe()) {
                throw new ErrnoException(Errno.EINVAL, dev.name() + ": cqe " + cqe + " outside 1.." + dev.attr.maxCqe());
            }
            if (compVector < 0 || compVector >= dev.attr.numCompVectors()) {
                throw new ErrnoException(Errno.EINVAL, dev.name() + ": completion vector " + compVector + " outside 0.."
                        + (dev.attr.numCompVectors() - 1));
            }
            ChannelImpl ch = null;
            if (channel != null) {
                if (!(channel instanceof ChannelImpl impl)) {
                    throw new ErrnoException(Errno.EINVAL, "not a completion channel of this core: " + channel);
                }
                impl.checkUsable(ctx, "channel");
                ch = impl;
            }
            dev.cqs.acquire();
            CqImpl cq;
            try {
                cq = new CqImpl(ctx, dev.allocNumber(dev.cqNumbers(), "CQ"), cqe, ch, compVector);
            } catch (RuntimeException e) {
                dev.cqs.release();
                throw e;
            }
            try {
                dev.provider.createCq(cq);
            } catch (RuntimeException e) {
                cq.undo();
                throw e;
            }
            return ctx.register(cq);
        }
    }

    private void undo() {
        dev.cqNumbers().free(cqn);
        dev.cqs.release();
    }

    /**
     * Adds a completion ({@code rxe_cq_post}).
     *
     * @param solicited the completion answers a solicited-only arming
     * @return false when the CQ overran or is in error: the completion was lost
     */
    boolean push(WorkCompletion wc, boolean solicited) {
        boolean fire = false;
        boolean overrun = false;
        lock.lock();
        try {
            if (errored) {
                return false;
            }
            if (ring.size() >= capacity || !ring.push(wc)) {
                errored = true;
                overrun = true;
            } else {
                if (notify == NOTIFY_NEXT || (notify == NOTIFY_SOLICITED && (solicited || !wc.isSuccess()))) {
                    notify = NOTIFY_NONE;
                    fire = true;
                }
            }
        } finally {
            lock.unlock();
        }
        if (overrun) {
            ctx.queueEvent(EventType.CQ_ERR, this, 0);
            return false;
        }
        Tracer tracer = dev.core.tracer;
        if (tracer.tracesCompletions()) {
            tracer.completed(dev.name(), wc.qpNum(), wc.wrId(), wc.opcode().name(), wc.status().name(), wc.byteLen());
        }
        if (fire && channel != null) {
            channel.deliver(this);
        }
        return true;
    }

    boolean isErrored() {
        lock.lock();
        try {
            return errored;
        } finally {
            lock.unlock();
        }
    }

    void compEventReported() {
        lock.lock();
        try {
            compReported++;
        } finally {
            lock.unlock();
        }
    }

    @Override
    void awaitEventAcks() {
        super.awaitEventAcks();
        lock.lock();
        try {
            while (compAcked < compReported) {
                acked.await();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, "cq " + handle() + ": interrupted waiting for completion events to be acknowledged");
        } finally {
            lock.unlock();
        }
    }

    private void checkLive() {
        if (isDestroyed()) {
            throw new ErrnoException(Errno.EINVAL, "cq " + handle() + " was destroyed");
        }
    }

    @Override
    public int cqe() {
        lock.lock();
        try {
            return capacity;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public int cqn() {
        return cqn;
    }

    @Override
    public int compVector() {
        return compVector;
    }

    @Override
    public Optional<CompletionChannel> channel() {
        return Optional.ofNullable(channel);
    }

    @Override
    public List<WorkCompletion> poll(int max) {
        if (max < 0) {
            throw new ErrnoException(Errno.EINVAL, "poll of " + max + " entries");
        }
        RemoveReason r = removedBy();
        if (r != null && r != RemoveReason.DRIVER_REMOVE) {
            throw new ErrnoException(Errno.EINVAL, "cq " + handle() + " was destroyed");
        }
        if (dev.provider.progressesOnPoll() && r == null && dev.isRegistered()) {
            try (UContext.Call c = ctx.enter()) {
                dev.provider.pollCq(this);
            } catch (ErrnoException e) {
                if (e.errno() != Errno.EIO) {
                    throw e;
                }
            }
        }
        if (max == 0 || ring.size() == 0) {
            return List.of();
        }
        pollLock.lock();
        try {
            CqRing q = ring;
            List<WorkCompletion> out = new ArrayList<>(Math.min(max, q.slots()));
            q.poll(max, out);
            return out;
        } finally {
            pollLock.unlock();
        }
    }

    @Override
    public void reqNotify(boolean solicitedOnly) {
        try (UContext.Call c = ctx.enter()) {
            checkLive();
            lock.lock();
            try {
                if (notify != NOTIFY_NEXT) {
                    notify = solicitedOnly ? NOTIFY_SOLICITED : NOTIFY_NEXT;
                }
            } finally {
                lock.unlock();
            }
            dev.provider.reqNotifyCq(this, solicitedOnly);
        }
    }

    @Override
    public void ackEvents(int n) {
        if (n < 0) {
            throw new ErrnoException(Errno.EINVAL, "ack of " + n + " events");
        }
        lock.lock();
        try {
            compAcked += n;
            acked.signalAll();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void resize(int cqe) {
        try (UContext.Call c = ctx.enter()) {
            checkLive();
            if (cqe < 1 || cqe > dev.attr.maxCqe()) {
                throw new ErrnoException(Errno.EINVAL, dev.name() + ": cqe " + cqe + " outside 1.." + dev.attr.maxCqe());
            }
            lock.lock();
            try {
                if (cqe < ring.size()) {
                    throw new ErrnoException(Errno.EINVAL, "cq " + handle() + ": cqe " + cqe + " is below the "
                            + ring.size() + " completions it holds");
                }
            } finally {
                lock.unlock();
            }
            dev.provider.resizeCq(this, cqe);
            lock.lock();
            pollLock.lock();
            try { // new CQ memory, the completions not polled yet moved over in order (rxe_cq_resize_queue)
                capacity = Math.max(cqe, ring.size());
                CqRing bigger = new CqRing(capacity);
                ring.moveTo(bigger);
                ring = bigger;
            } finally {
                pollLock.unlock();
                lock.unlock();
            }
        }
    }

    @Override
    public int pending() {
        return ring.size();
    }

    @Override
    void release(RemoveReason reason) {
        dev.provider.destroyCq(this);
        if (channel != null) {
            channel.purge(this);
        }
        ctx.purgeEvents(this);
        if (reason != RemoveReason.DRIVER_REMOVE) {
            lock.lock();
            pollLock.lock();
            try {
                ring.clear();
            } finally {
                pollLock.unlock();
                lock.unlock();
            }
        }
        undo();
    }

    @Override
    Map<String, String> resAttrs() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("cqn", Integer.toString(cqn));
        m.put("cqe", Integer.toString(cqe()));
        m.put("users", Integer.toString(uobj.useCount()));
        m.put("pending", Integer.toString(pending()));
        if (isErrored()) {
            m.put("state", "ERROR");
        }
        return m;
    }
}
