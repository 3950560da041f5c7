package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwObject;
import dev.dmaplane.rdma.verbs.ResourceEntry;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.VerbsObject;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UObject;

import java.util.Map;

/**
 * Common part of every verbs object: its entry in the context's handle table ({@link UObject}, with the
 * dependencies that make a destroy {@code EBUSY}), the provider's slot, and the accounting of affiliated async
 * events that {@code ibv_destroy_*} waits on ({@code events_reported} against acknowledgements).
 */
abstract class ObjectImpl implements VerbsObject, HwObject {
    final ContextImpl ctx;
    final DeviceImpl dev;
    final UObject uobj;
    private volatile Object driverData;
    private volatile RemoveReason removedBy;
    private int asyncReported;
    private int asyncAcked;

    ObjectImpl(ContextImpl ctx, String type, ObjectImpl... deps) {
        this.ctx = ctx;
        this.dev = ctx.dev;
        UObject[] d = new UObject[deps.length];
        for (int i = 0; i < deps.length; i++) {
            d[i] = deps[i].uobj;
        }
        this.uobj = new Handle(type, d);
    }

    private final class Handle extends UObject {
        Handle(String type, UObject[] deps) {
            super(type, deps);
        }

        @Override
        protected void release(RemoveReason reason) {
            ObjectImpl.this.release(reason);
            removedBy = reason;
        }

        @Override
        public String describe() {
            StringBuilder sb = new StringBuilder();
            resAttrs().forEach((k, v) -> sb.append(sb.isEmpty() ? "" : " ").append(k).append(' ').append(v));
            return sb.toString();
        }
    }

    /**
     * Releases what the object holds. For {@link RemoveReason#DESTROY} it may refuse by throwing, leaving the
     * object intact; for the other reasons it must succeed.
     */
    abstract void release(RemoveReason reason);

    /** The attributes {@code rdma res} shows for this object. */
    abstract Map<String, String> resAttrs();

    final ResourceEntry resourceEntry() {
        return new ResourceEntry(dev.name(), ctx.uctx.id(), uobj.type(), handle(), resAttrs());
    }

    /** How the object went, or null while it lives. */
    final RemoveReason removedBy() {
        return removedBy;
    }

    @Override
    public final int handle() {
        return uobj.handle();
    }

    @Override
    public final VerbsContext context() {
        return ctx;
    }

    @Override
    public final boolean isDestroyed() {
        return uobj.isDestroyed();
    }

    @Override
    public void destroy() {
        awaitEventAcks();
        ctx.destroyObject(this);
    }

    @Override
    public final Object driverData() {
        return driverData;
    }

    @Override
    public final void setDriverData(Object data) {
        this.driverData = data;
    }

    /** Throws {@code EINVAL} unless this object belongs to {@code c} and lives. */
    final void checkUsable(ContextImpl c, String what) {
        if (ctx != c) {
            throw new ErrnoException(Errno.EINVAL, what + " " + uobj.type() + " " + handle() + " belongs to another context");
        }
        if (isDestroyed()) {
            throw new ErrnoException(Errno.EINVAL, what + " " + uobj.type() + " was destroyed");
        }
    }

    final synchronized void asyncEventReported() {
        asyncReported++;
    }

    final synchronized void asyncEventAcked() {
        asyncAcked++;
        notifyAll();
    }

    /** Waits until every async event read for this object was acknowledged (libibverbs' destroy does). */
    void awaitEventAcks() {
        synchronized (this) {
            while (asyncAcked < asyncReported) {
                try {
                    wait();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new ErrnoException(Errno.EINTR, uobj.type() + " " + handle() + ": interrupted waiting for "
                            + (asyncReported - asyncAcked) + " async event(s) to be acknowledged");
                }
            }
        }
    }

    @Override
    public String toString() {
        return uobj.toString();
    }
}
