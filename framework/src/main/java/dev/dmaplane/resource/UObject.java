package dev.dmaplane.resource;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * An object a user context holds by handle ({@code struct ib_uobject}): a PD, an MR, a queue, a dma-buf. It may
 * depend on others (an MR on its PD); an object others depend on cannot be destroyed by the user ({@code EBUSY})
 * until they are gone. Subclasses release their hardware state, pins and mappings in {@link #release}.
 */
public abstract class UObject {
    private final String type;
    private final List<UObject> dependsOn = new ArrayList<>();
    private final AtomicInteger usecnt = new AtomicInteger();
    private volatile int handle = -1;
    private volatile UContext context;
    private volatile boolean destroyed;

    protected UObject(String type, UObject... dependsOn) {
        if (type == null || type.isBlank()) {
            throw new ErrnoException(Errno.EINVAL, "object type must not be blank");
        }
        this.type = type;
        for (UObject parent : dependsOn) {
            if (parent == null || parent.destroyed) {
                throw new ErrnoException(Errno.EINVAL, type + " depends on a destroyed or missing object");
            }
            this.dependsOn.add(parent);
        }
    }

    /** The object type as {@code rdma res} shows it, e.g. {@code pd}, {@code mr}. */
    public final String type() {
        return type;
    }

    /** The handle in its context, or -1 before registration. */
    public final int handle() {
        return handle;
    }

    /** The context holding the object. */
    public final UContext context() {
        return context;
    }

    /** How many live objects depend on this one ({@code usecnt}). */
    public final int useCount() {
        return usecnt.get();
    }

    public final boolean isDestroyed() {
        return destroyed;
    }

    /**
     * Releases what the object holds. For {@link RemoveReason#DESTROY} it may refuse by throwing an
     * {@link ErrnoException}, leaving the object intact; for every other reason it must succeed.
     */
    protected abstract void release(RemoveReason reason);

    /** A short description for listings (sizes, keys, state). */
    public String describe() {
        return "";
    }

    final void attach(UContext ctx, int h) {
        this.context = ctx;
        this.handle = h;
        for (UObject p : dependsOn) {
            p.usecnt.incrementAndGet();
        }
    }

    /** Runs {@link #release}; on success drops the dependencies. */
    final void destroy(RemoveReason reason) {
        if (reason == RemoveReason.DESTROY && usecnt.get() > 0) {
            throw new ErrnoException(Errno.EBUSY, type + " handle " + handle + " is in use by " + usecnt.get() + " object(s)");
        }
        release(reason);
        destroyed = true;
        for (UObject p : dependsOn) {
            p.usecnt.decrementAndGet();
        }
    }

    @Override
    public String toString() {
        String d = describe();
        return type + " " + handle + (d.isEmpty() ? "" : " " + d);
    }
}
