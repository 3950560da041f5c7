package dev.dmaplane.accel.sync;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.Fences;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A {@code struct drm_syncobj} ({@code drivers/gpu/drm/drm_syncobj.c}, {@code include/uapi/drm/drm.h}): a container
 * for a fence that can be replaced. Used as a binary sync object it holds one fence (point 0); used as a timeline it
 * holds points, each a fence, that signal as a {@code dma_fence_chain} does: point {@code p} is signalled once its
 * fence and every earlier point's fence have signalled. Thread-safe.
 * <p>
 * Waiting on many at once is {@link SyncObjWait}. Errnos follow {@code drm_syncobj.c}: a fence asked for where
 * none was submitted is {@code EINVAL} unless {@link #WAIT_FOR_SUBMIT} waits for it (the kernel's
 * {@code drm_syncobj_find_fence}; {@code ENOENT} there means an unknown handle, which a handle table reports), a
 * wait that times out is {@code ETIME}.
 */
public final class SyncObj {
    /** {@code DRM_SYNCOBJ_CREATE_SIGNALED}. */
    public static final int CREATE_SIGNALED = 1;
    /** {@code DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL}. */
    public static final int WAIT_ALL = 1;
    /** {@code DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT}: wait for a fence to be submitted rather than fail. */
    public static final int WAIT_FOR_SUBMIT = 1 << 1;
    /** {@code DRM_SYNCOBJ_WAIT_FLAGS_WAIT_AVAILABLE}: timeline waits only, wait for submission, not signal. */
    public static final int WAIT_AVAILABLE = 1 << 2;
    /** {@code DRM_SYNCOBJ_QUERY_FLAGS_LAST_SUBMITTED}. */
    public static final int QUERY_LAST_SUBMITTED = 1;

    private record Point(long seqno, Fence fence) {
    }

    private final String name;
    /** The binary fence, or the fence the first timeline point was added on top of. */
    private Fence base;
    private final List<Point> points = new ArrayList<>();
    private final List<Runnable> submitWaiters = new CopyOnWriteArrayList<>();

    private SyncObj(String name) {
        this.name = name;
    }

    /**
     * {@code drm_syncobj_create}: an empty sync object, or one holding a signalled stub fence with
     * {@link #CREATE_SIGNALED}. {@code EINVAL} for any other flag, as {@code drm_syncobj_create_ioctl}.
     */
    public static SyncObj create(String name, int flags) {
        ErrnoException.check((flags & ~CREATE_SIGNALED) == 0, Errno.EINVAL, "drm_syncobj_create: flags 0x"
                + Integer.toHexString(flags) + " has bits other than CREATE_SIGNALED");
        SyncObj s = new SyncObj(name == null ? "syncobj" : name);
        if ((flags & CREATE_SIGNALED) != 0) {
            s.signal();
        }
        return s;
    }

    public String name() {
        return name;
    }

    /** Whether timeline points were added since the last replace or reset. */
    public synchronized boolean isTimeline() {
        return !points.isEmpty();
    }

    /** {@code drm_syncobj_replace_fence}: the object now holds {@code fence} (null empties it); timeline points go. */
    public void replaceFence(Fence fence) {
        synchronized (this) {
            base = fence;
            points.clear();
        }
        notifySubmit();
    }

    /** {@code DRM_IOCTL_SYNCOBJ_RESET}: the object holds no fence. */
    public void reset() {
        replaceFence(null);
    }

    /** {@code DRM_IOCTL_SYNCOBJ_SIGNAL}: the object holds an already signalled stub fence. */
    public void signal() {
        replaceFence(Fences.all(List.of()));
    }

    /**
     * {@code drm_syncobj_add_point}: adds timeline point {@code point} carried by {@code fence}; point 0 replaces
     * the fence as on a binary object. A point not after the last one is {@code EINVAL} (the kernel accepts it
     * with a debug message, after which {@link #query} can report 0; refusing keeps the timeline ordered).
     */
    public void addPoint(Fence fence, long point) {
        ErrnoException.check(fence != null, Errno.EINVAL, "drm_syncobj_add_point on " + name + ": fence is null");
        if (point == 0) {
            replaceFence(fence);
            return;
        }
        synchronized (this) {
            ErrnoException.check(point > 0, Errno.EINVAL, "drm_syncobj_add_point on " + name + ": point "
                    + Long.toUnsignedString(point) + " is above 2^63 - 1");
            long last = points.isEmpty() ? 0 : points.getLast().seqno();
            ErrnoException.check(point > last, Errno.EINVAL, "drm_syncobj_add_point on " + name + ": point "
                    + point + " is not after the last point " + last);
            points.add(new Point(point, fence));
        }
        notifySubmit();
    }

    /** {@code DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL}: adds {@code point} carried by a signalled stub fence. */
    public void timelineSignal(long point) {
        addPoint(Fences.all(List.of()), point);
    }

    /**
     * {@code DRM_IOCTL_SYNCOBJ_QUERY}: the last signalled point (every point up to it signalled), or with
     * {@link #QUERY_LAST_SUBMITTED} the last point added; 0 for a binary object. {@code EINVAL} for other flags.
     */
    public synchronized long query(int flags) {
        ErrnoException.check((flags & ~QUERY_LAST_SUBMITTED) == 0, Errno.EINVAL, "drm_syncobj_query on " + name
                + ": flags 0x" + Integer.toHexString(flags) + " has bits other than LAST_SUBMITTED");
        if (points.isEmpty()) {
            return 0;
        }
        if ((flags & QUERY_LAST_SUBMITTED) != 0) {
            return points.getLast().seqno();
        }
        if (base != null && !base.isSignaled()) {
            return 0;
        }
        long last = 0;
        for (Point p : points) {
            if (!p.fence().isSignaled()) {
                break;
            }
            last = p.seqno();
        }
        return last;
    }

    /**
     * {@code drm_syncobj_find_fence}: the fence for {@code point} (0: the object's current fence; on a timeline,
     * the fence of the first point at or after {@code point}, which signals once every point up to it has). With
     * {@link #WAIT_FOR_SUBMIT} it waits up to {@code timeout} for the point to be submitted ({@code ETIME} after);
     * without it, a point not submitted is {@code EINVAL}. {@code EINVAL} for flags other than WAIT_FOR_SUBMIT.
     */
    public Fence findFence(long point, int flags, Duration timeout) {
        ErrnoException.check((flags & ~WAIT_FOR_SUBMIT) == 0, Errno.EINVAL, "drm_syncobj_find_fence on " + name
                + ": flags 0x" + Integer.toHexString(flags) + " has bits other than WAIT_FOR_SUBMIT");
        Fence f = fenceFor(point);
        if (f != null) {
            return f;
        }
        ErrnoException.check((flags & WAIT_FOR_SUBMIT) != 0, Errno.EINVAL, "drm_syncobj_find_fence on " + name
                + ": nothing submitted for point " + point);
        return SyncObjWait.awaitSubmit(this, point, timeout);
    }

    /**
     * {@code DRM_IOCTL_SYNCOBJ_TRANSFER}: the fence of {@code srcPoint} of {@code src} (see {@link #findFence})
     * becomes point {@code dstPoint} of this object, or replaces its fence when {@code dstPoint} is 0.
     */
    public void transferFrom(SyncObj src, long srcPoint, long dstPoint, int flags, Duration timeout) {
        ErrnoException.check(src != null, Errno.EINVAL, "drm_syncobj_transfer to " + name + ": source is null");
        Fence f = src.findFence(srcPoint, flags, timeout);
        if (dstPoint == 0) {
            replaceFence(f);
        } else {
            addPoint(f, dstPoint);
        }
    }

    /** The fence for {@code point}, or null when it was not submitted ({@code dma_fence_chain_find_seqno}). */
    synchronized Fence fenceFor(long point) {
        if (points.isEmpty()) {
            return point == 0 ? base : null;
        }
        long target = point == 0 ? points.getLast().seqno() : point;
        if (Long.compareUnsigned(target, points.getLast().seqno()) > 0) {
            return null;
        }
        List<Fence> upTo = new ArrayList<>();
        if (base != null) {
            upTo.add(base);
        }
        for (Point p : points) {
            upTo.add(p.fence());
            if (p.seqno() >= target) {
                break;
            }
        }
        List<Fence> pending = upTo.stream().filter(f -> !f.isSignaled()).toList();
        if (pending.isEmpty()) {
            return upTo.getLast();
        }
        return pending.size() == 1 ? pending.getFirst() : Fences.all(pending);
    }

    void addSubmitWaiter(Runnable waiter) {
        submitWaiters.add(waiter);
    }

    void removeSubmitWaiter(Runnable waiter) {
        submitWaiters.remove(waiter);
    }

    private void notifySubmit() {
        for (Runnable r : submitWaiters) {
            r.run();
        }
    }

    @Override
    public String toString() {
        return "drm_syncobj " + name;
    }
}
