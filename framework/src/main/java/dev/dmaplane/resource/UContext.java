package dev.dmaplane.resource;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.osgi.annotation.versioning.ProviderType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A user context on one device ({@code struct ib_ucontext} behind an open {@code /dev/infiniband/uverbsN}):
 * a handle table of {@link UObject}s, charged against the device's limits. Calls run inside {@link #enter()};
 * disassociation (device removal) waits for calls in flight, destroys every object newest first, and from then
 * on every call fails with {@code EIO}, as uverbs does after {@code ib_uverbs_disassociate}.
 */
public final class UContext implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(UContext.class);

    private final DeviceResources owner;
    private final int id;
    private final ReentrantReadWriteLock lifecycle = new ReentrantReadWriteLock();
    private final Map<Integer, UObject> objects = new LinkedHashMap<>();
    private final BitSet usedHandles = new BitSet();
    private volatile State state = State.LIVE;

    /** Lifecycle of a context. */
    public enum State { LIVE, DISASSOCIATED, CLOSED }

    /** A call in flight: holds off disassociation until closed. */
    @ProviderType
    public interface Call extends AutoCloseable {
        @Override
        void close();
    }

    UContext(DeviceResources owner, int id) {
        this.owner = owner;
        this.id = id;
    }

    public int id() {
        return id;
    }

    /** The device this context was opened on. */
    public String device() {
        return owner.device();
    }

    public State state() {
        return state;
    }

    /**
     * Marks the start of a call on this context; close the result when the call ends.
     *
     * @throws ErrnoException {@code EIO} after disassociation, {@code EBADF} after close
     */
    public Call enter() {
        ReentrantReadWriteLock.ReadLock r = lifecycle.readLock();
        r.lock();
        if (state != State.LIVE) {
            r.unlock();
            throw stateError();
        }
        return r::unlock;
    }

    /**
     * Adds {@code obj} to the table, charging one {@code hca_object}.
     *
     * @return its handle, the lowest free one
     * @throws ErrnoException {@code EAGAIN} over the device's object limit, {@code EIO}/{@code EBADF} if the
     *                        context is gone; the object is then released with {@link RemoveReason#ABORT}
     */
    public <T extends UObject> T register(T obj) {
        try (Call ignored = enter()) {
            synchronized (objects) {
                if (obj.handle() >= 0) {
                    throw new ErrnoException(Errno.EEXIST, obj.type() + " is already registered as handle " + obj.handle());
                }
                owner.chargeObject();
                int h = usedHandles.nextClearBit(0);
                usedHandles.set(h);
                obj.attach(this, h);
                objects.put(h, obj);
                return obj;
            }
        } catch (ErrnoException e) {
            if (obj.handle() < 0) {
                obj.release(RemoveReason.ABORT);
            }
            throw e;
        }
    }

    /**
     * The object behind {@code handle}, which must be of {@code type}.
     *
     * @throws ErrnoException {@code EINVAL} for an unknown handle or one of another type (as uverbs' uobj lookup)
     */
    public <T extends UObject> T lookup(int handle, Class<T> type) {
        try (Call ignored = enter()) {
            UObject o;
            synchronized (objects) {
                o = objects.get(handle);
            }
            if (o == null) {
                throw new ErrnoException(Errno.EINVAL, "no object with handle " + handle + " in context " + id + " on " + device());
            }
            if (!type.isInstance(o)) {
                throw new ErrnoException(Errno.EINVAL, "handle " + handle + " is a " + o.type() + ", not a " + type.getSimpleName());
            }
            return type.cast(o);
        }
    }

    /**
     * Destroys the object behind {@code handle} ({@code RDMA_REMOVE_DESTROY}).
     *
     * @throws ErrnoException {@code EINVAL} for an unknown handle, {@code EBUSY} while others depend on it; in both
     *                        cases nothing changes
     */
    public void destroy(int handle) {
        try (Call ignored = enter()) {
            UObject o;
            synchronized (objects) {
                o = objects.get(handle);
                if (o == null) {
                    throw new ErrnoException(Errno.EINVAL, "no object with handle " + handle + " in context " + id + " on " + device());
                }
                o.destroy(RemoveReason.DESTROY);
                objects.remove(handle);
                usedHandles.clear(handle);
            }
            owner.unchargeObject();
        }
    }

    /**
     * Destroys {@code obj} if this context still holds it ({@code RDMA_REMOVE_DESTROY}). Finding it and taking it out
     * are one step under the table's lock, as {@code file_close_fd} takes a file out of the process's table before
     * {@code filp_close} closes it: a handle that another thread closed and gave to a new object in the meantime
     * names that object, which stays.
     *
     * @return whether {@code obj} was held and is destroyed now; false, with nothing changed, when it was destroyed
     *         or closed already, never registered, or is another context's
     * @throws ErrnoException {@code EINVAL} for null, {@code EBUSY} while others depend on it (nothing changes),
     *                        {@code EIO}/{@code EBADF} if the context is gone
     */
    public boolean destroy(UObject obj) {
        ErrnoException.requireNonNull(obj, "object to destroy");
        try (Call ignored = enter()) {
            int handle = obj.handle();
            synchronized (objects) {
                if (handle < 0 || objects.get(handle) != obj) {
                    return false;
                }
                obj.destroy(RemoveReason.DESTROY);
                objects.remove(handle);
                usedHandles.clear(handle);
            }
            owner.unchargeObject();
            return true;
        }
    }

    /** The objects held, oldest first. */
    public List<UObject> objects() {
        synchronized (objects) {
            return List.copyOf(objects.values());
        }
    }

    /** Closes the context: destroys every object, newest first ({@code RDMA_REMOVE_CLOSE}). Idempotent. */
    @Override
    public void close() {
        tearDown(State.CLOSED, RemoveReason.CLOSE);
    }

    /**
     * Cuts the context off its departing device: waits for calls in flight, destroys every object newest first
     * ({@code RDMA_REMOVE_DRIVER_REMOVE}); later calls fail with {@code EIO}. Idempotent.
     *
     * @return the number of objects destroyed
     */
    public int disassociate() {
        return tearDown(State.DISASSOCIATED, RemoveReason.DRIVER_REMOVE);
    }

    private int tearDown(State to, RemoveReason reason) {
        lifecycle.writeLock().lock();
        List<UObject> all;
        try {
            if (state != State.LIVE) {
                if (to == State.CLOSED && state == State.DISASSOCIATED) {
                    state = State.CLOSED;
                    owner.forget(this);
                }
                return 0;
            }
            state = to;
            synchronized (objects) {
                all = new ArrayList<>(objects.values());
                objects.clear();
                usedHandles.clear();
            }
            for (int i = all.size() - 1; i >= 0; i--) {
                try {
                    all.get(i).destroy(reason);
                } catch (RuntimeException e) {
                    LOG.error("{}: {} of {} failed; its resources may leak", device(), reason, all.get(i), e);
                }
                owner.unchargeObject();
            }
        } finally {
            lifecycle.writeLock().unlock();
        }
        if (to == State.CLOSED) {
            owner.forget(this);
        }
        return all.size();
    }

    private ErrnoException stateError() {
        return state == State.DISASSOCIATED
                ? new ErrnoException(Errno.EIO, "context " + id + " was disassociated from " + device() + " (device removed)")
                : new ErrnoException(Errno.EBADF, "context " + id + " on " + device() + " is closed");
    }

    @Override
    public String toString() {
        return "ucontext " + id + " on " + device() + " (" + state.name().toLowerCase() + ", " + objects().size() + " objects)";
    }
}
