package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.CompletionChannel;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.GidEntry;
import dev.dmaplane.rdma.verbs.PortAttr;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.ResourceEntry;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.resource.UContext;
import dev.dmaplane.resource.UObject;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingDeque;
import java.util.concurrent.TimeUnit;

/** A device context: the uverbs file of one process, its handle table and its async event queue. */
final class ContextImpl implements VerbsContext {
    final DeviceImpl dev;
    final UContext uctx;
    final AddressSpace mm;
    private final LinkedBlockingDeque<AsyncEventImpl> events = new LinkedBlockingDeque<>();
    private final Map<UObject, ObjectImpl> owners = new ConcurrentHashMap<>();
    private final Object destroyLock = new Object();
    private volatile boolean closed;

    ContextImpl(DeviceImpl dev, UContext uctx, AddressSpace mm) {
        this.dev = dev;
        this.uctx = uctx;
        this.mm = mm;
    }

    /** A call in flight: holds off disassociation; {@code EIO} after it, {@code EBADF} after close. */
    UContext.Call enter() {
        return uctx.enter();
    }

    /** Puts a fully built object into the handle table (on failure it is released with ABORT). */
    <T extends ObjectImpl> T register(T obj) {
        owners.put(obj.uobj, obj);
        try {
            uctx.register(obj.uobj);
        } catch (RuntimeException e) {
            owners.remove(obj.uobj);
            throw e;
        }
        return obj;
    }

    void destroyObject(ObjectImpl obj) {
        try (UContext.Call c = uctx.enter()) {
            synchronized (destroyLock) {
                obj.checkUsable(this, "destroy of");
                uctx.destroy(obj.handle());
            }
        }
        owners.remove(obj.uobj);
    }

    void queueEvent(EventType type, ObjectImpl element, int port) {
        if (!closed) {
            events.add(new AsyncEventImpl(type, element, port));
        }
    }

    /** Drops unread events of an object that goes away (as {@code ib_uverbs_release_uevent}). */
    void purgeEvents(ObjectImpl element) {
        events.removeIf(e -> e.element() == element);
    }

    private void checkOpen() {
        if (closed) {
            throw new ErrnoException(Errno.EBADF, "context " + uctx.id() + " on " + dev.name() + " is closed");
        }
    }

    @Override
    public String deviceName() {
        return dev.name();
    }

    @Override
    public AddressSpace addressSpace() {
        return mm;
    }

    @Override
    public DeviceAttr queryDevice() {
        try (UContext.Call c = enter()) {
            return dev.attr;
        }
    }

    @Override
    public PortAttr queryPort(int port) {
        try (UContext.Call c = enter()) {
            return dev.portAttrOf(port);
        }
    }

    @Override
    public Gid queryGid(int port, int index) {
        try (UContext.Call c = enter()) {
            PortImpl p = dev.port(port);
            if (index < 0 || index >= p.size()) {
                throw new ErrnoException(Errno.EINVAL, dev.name() + " port " + port + ": GID index " + index
                        + " outside the table of " + p.size());
            }
            GidEntry e = p.entry(index);
            return e == null ? Gid.ZERO : e.gid();
        }
    }

    @Override
    public List<GidEntry> queryGidTable() {
        try (UContext.Call c = enter()) {
            List<GidEntry> out = new ArrayList<>();
            for (int p = 1; p <= dev.portCount(); p++) {
                out.addAll(dev.port(p).entries());
            }
            return out;
        }
    }

    @Override
    public ProtectionDomain allocPd() {
        return PdImpl.create(this);
    }

    @Override
    public CompletionChannel createCompChannel() {
        return ChannelImpl.create(this);
    }

    @Override
    public CompletionQueue createCq(int cqe, CompletionChannel channel, int compVector) {
        return CqImpl.create(this, cqe, channel, compVector);
    }

    @Override
    public Optional<AsyncEvent> pollAsyncEvent() {
        checkOpen();
        return Optional.ofNullable(reported(events.poll()));
    }

    @Override
    public Optional<AsyncEvent> getAsyncEvent(Duration timeout) {
        ErrnoException.requireNonNull(timeout, "ibv_get_async_event: timeout");
        checkOpen();
        try {
            return Optional.ofNullable(reported(events.poll(timeout.toNanos(), TimeUnit.NANOSECONDS)));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, "interrupted waiting for an async event");
        }
    }

    private AsyncEvent reported(AsyncEventImpl e) {
        if (e != null && e.element() != null) {
            e.element().asyncEventReported();
        }
        return e;
    }

    @Override
    public List<ResourceEntry> resources() {
        List<ResourceEntry> out = new ArrayList<>();
        for (UObject u : uctx.objects()) {
            ObjectImpl o = owners.get(u);
            if (o != null) {
                out.add(o.resourceEntry());
            }
        }
        return out;
    }

    @Override
    public boolean isDisassociated() {
        return !dev.isRegistered();
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        uctx.close();
        closed = true;
        events.clear();
        owners.clear();
        dev.forget(this);
    }

    @Override
    public String toString() {
        return "verbs context " + uctx.id() + " on " + dev.name();
    }
}
