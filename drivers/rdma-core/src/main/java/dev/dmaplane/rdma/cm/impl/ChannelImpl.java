package dev.dmaplane.rdma.cm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.EventChannel;
import dev.dmaplane.rdma.cm.PortSpace;
import dev.dmaplane.rdma.cm.impl.CmMessages.Req;
import dev.dmaplane.rdma.verbs.VerbsContext;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * An event channel ({@code ucma_file}): its queue of events, under a lock of its own so that a waiting reader
 * never holds the rdma_cm's, and the device contexts it opened for its process (librdmacm's {@code id->verbs}).
 */
final class ChannelImpl implements EventChannel {
    private static final Logger LOG = LoggerFactory.getLogger(ChannelImpl.class);

    private final CmaImpl cma;
    private final AddressSpace process;
    private final ReentrantLock qlock = new ReentrantLock();
    private final Condition nonEmpty = qlock.newCondition();
    private final ArrayDeque<EventImpl> queue = new ArrayDeque<>();
    private final Map<RdmaDevice, VerbsContext> contexts = new HashMap<>();
    private volatile boolean closed;

    ChannelImpl(CmaImpl cma, AddressSpace process) {
        this.cma = cma;
        this.process = process;
    }

    @Override
    public CmId createId(PortSpace ps) {
        ErrnoException.requireNonNull(ps, "port space");
        synchronized (cma.lock) {
            checkOpen();
            IdImpl id = new IdImpl(cma, this, ps);
            cma.ids.add(id);
            return id;
        }
    }

    private void checkOpen() {
        if (closed) {
            throw new ErrnoException(Errno.EBADF, "the event channel is closed");
        }
    }

    /** The context of {@code dev} for this channel's process, opened on first use. Under the rdma_cm lock. */
    VerbsContext verbs(RdmaDevice dev) {
        VerbsContext c = contexts.get(dev);
        if (c == null) {
            c = dev.open(process);
            contexts.put(dev, c);
        }
        return c;
    }

    /** The new id of a REQ to listener {@code l} ({@code cma_ib_new_conn_id}) with its CONNECT_REQUEST queued. */
    IbCm.Owner childFor(IdImpl l, IbCm.Conn c, Req req, IpHeader h) {
        IdImpl id = new IdImpl(cma, this, l.ps);
        id.child = true;
        cma.ids.add(id);
        IbCm.Owner owner = id.accepting(l, c, req, h);
        l.pendingRequests.incrementAndGet();
        return owner;
    }

    void add(EventImpl e) {
        qlock.lock();
        try {
            if (closed) {
                return;
            }
            queue.add(e);
            nonEmpty.signalAll();
        } finally {
            qlock.unlock();
        }
    }

    @Override
    public CmEvent getEvent(Duration timeout) {
        ErrnoException.requireNonNull(timeout, "timeout");
        long nanos = timeout.toNanos();
        EventImpl e;
        qlock.lock();
        try {
            while (queue.isEmpty()) {
                checkOpen();
                if (nanos <= 0) {
                    throw new ErrnoException(Errno.ETIMEDOUT, "no rdma_cm event within " + timeout);
                }
                nanos = nonEmpty.awaitNanos(nanos);
            }
            e = queue.poll();
        } catch (InterruptedException x) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, "interrupted waiting for an rdma_cm event", x);
        } finally {
            qlock.unlock();
        }
        if (e.type() == CmEventType.CONNECT_REQUEST) {
            e.listenImpl().pendingRequests.decrementAndGet(); // ucma_get_event: ctx->backlog++
        }
        return e;
    }

    /** Drops the events of {@code id} nobody took yet ({@code ucma_cleanup_events}). */
    void dropEvents(IdImpl id) {
        qlock.lock();
        try {
            queue.removeIf(e -> {
                boolean mine = e.idImpl() == id;
                if (mine && e.type() == CmEventType.CONNECT_REQUEST) {
                    e.listenImpl().pendingRequests.decrementAndGet();
                }
                return mine;
            });
        } finally {
            qlock.unlock();
        }
    }

    /** Events queued and not taken. */
    int queued() {
        qlock.lock();
        try {
            return queue.size();
        } finally {
            qlock.unlock();
        }
    }

    @Override
    public void close() {
        List<IdImpl> mine;
        List<VerbsContext> ctxs;
        synchronized (cma.lock) {
            if (closed) {
                return;
            }
            closed = true;
            mine = cma.ids.stream().filter(i -> i.channel == this).toList();
            ctxs = new ArrayList<>(contexts.values());
            contexts.clear();
        }
        for (IdImpl id : mine) {
            id.destroy();
        }
        qlock.lock();
        try {
            queue.clear();
            nonEmpty.signalAll();
        } finally {
            qlock.unlock();
        }
        for (VerbsContext c : ctxs) {
            try {
                c.close();
            } catch (RuntimeException e) {
                LOG.error("closing the context of {} for an event channel failed", c.deviceName(), e);
            }
        }
        cma.channels.remove(this);
    }
}
