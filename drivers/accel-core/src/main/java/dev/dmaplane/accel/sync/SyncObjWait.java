package dev.dmaplane.accel.sync;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/**
 * {@code DRM_IOCTL_SYNCOBJ_WAIT} and {@code DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT} ({@code drm_syncobj_array_wait_timeout}
 * in {@code drivers/gpu/drm/drm_syncobj.c}): waiting for all or any of several sync objects, each at a point.
 */
public final class SyncObjWait {
    private SyncObjWait() {
    }

    /** A wake-up that fence callbacks and submissions poke; the waiter rechecks after each. */
    private static final class Waker {
        private final ReentrantLock lock = new ReentrantLock();
        private final Condition poked = lock.newCondition();
        private boolean pending;

        void poke() {
            lock.lock();
            try {
                pending = true;
                poked.signalAll();
            } finally {
                lock.unlock();
            }
        }

        /** Waits until poked or the deadline; false once the deadline passed without a poke. */
        boolean await(long deadline, String what) {
            lock.lock();
            try {
                while (!pending) {
                    long left = deadline - System.nanoTime();
                    if (left <= 0) {
                        return false;
                    }
                    poked.awaitNanos(left);
                }
                pending = false;
                return true;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new ErrnoException(Errno.EINTR, what + " interrupted");
            } finally {
                lock.unlock();
            }
        }
    }

    /**
     * {@code DRM_IOCTL_SYNCOBJ_WAIT}: waits for the current fence of each of {@code objs} (point 0). Flags
     * {@link SyncObj#WAIT_ALL} and {@link SyncObj#WAIT_FOR_SUBMIT} only; see {@link #timelineWait}.
     */
    public static int await(List<SyncObj> objs, int flags, Duration timeout) {
        ErrnoException.check((flags & ~(SyncObj.WAIT_ALL | SyncObj.WAIT_FOR_SUBMIT)) == 0, Errno.EINVAL,
                "drm_syncobj_wait: flags 0x" + Integer.toHexString(flags) + " has bits other than WAIT_ALL and"
                        + " WAIT_FOR_SUBMIT");
        return waitArray(objs, objs == null ? null : new long[objs.size()], flags, timeout);
    }

    /**
     * {@code DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT}: waits until {@code points[i]} of {@code objs[i]} has signalled
     * (with {@link SyncObj#WAIT_AVAILABLE}: has been submitted), for all of them with {@link SyncObj#WAIT_ALL},
     * else for any; returns the index of the first one found done ({@code first_signaled}; with WAIT_ALL, the first
     * found at entry or -1). A point not submitted is {@code EINVAL} unless WAIT_FOR_SUBMIT or WAIT_AVAILABLE; no
     * objects, other flags, a points array of another length: {@code EINVAL}; the timeout passing: {@code ETIME};
     * an interrupt: {@code EINTR}.
     */
    public static int timelineWait(List<SyncObj> objs, long[] points, int flags, Duration timeout) {
        ErrnoException.check((flags & ~(SyncObj.WAIT_ALL | SyncObj.WAIT_FOR_SUBMIT | SyncObj.WAIT_AVAILABLE)) == 0,
                Errno.EINVAL, "drm_syncobj_timeline_wait: flags 0x" + Integer.toHexString(flags)
                        + " has unknown bits");
        return waitArray(objs, points, flags, timeout);
    }

    private static int waitArray(List<SyncObj> objs, long[] points, int flags, Duration timeout) {
        ErrnoException.check(objs != null && !objs.isEmpty(), Errno.EINVAL, "drm_syncobj_wait: no sync objects");
        ErrnoException.check(points != null && points.length == objs.size(), Errno.EINVAL,
                "drm_syncobj_timeline_wait: " + (points == null ? "no" : points.length) + " points for "
                        + objs.size() + " sync objects");
        ErrnoException.check(timeout != null && !timeout.isNegative(), Errno.EINVAL,
                "drm_syncobj_wait: timeout " + timeout + " must be zero or positive");
        for (int i = 0; i < objs.size(); i++) {
            ErrnoException.check(objs.get(i) != null, Errno.EINVAL, "drm_syncobj_wait: sync object " + i
                    + " is null");
        }
        boolean all = (flags & SyncObj.WAIT_ALL) != 0;
        boolean forSubmit = (flags & (SyncObj.WAIT_FOR_SUBMIT | SyncObj.WAIT_AVAILABLE)) != 0;
        boolean available = (flags & SyncObj.WAIT_AVAILABLE) != 0;
        int n = objs.size();
        Fence[] fences = new Fence[n];
        int first = -1;
        for (int i = 0; i < n; i++) {
            fences[i] = objs.get(i).fenceFor(points[i]);
            ErrnoException.check(fences[i] != null || forSubmit, Errno.EINVAL, "drm_syncobj_wait: "
                    + objs.get(i) + " has nothing submitted for point " + points[i] + " (no WAIT_FOR_SUBMIT)");
            if (fences[i] != null && (available || fences[i].isSignaled()) && first < 0) {
                first = i;
            }
        }
        long deadline = System.nanoTime() + timeout.toNanos();
        Waker waker = new Waker();
        Runnable onSubmit = waker::poke;
        Consumer<Fence> onSignal = f -> waker.poke();
        List<Fence> watched = new ArrayList<>();
        if (forSubmit) {
            objs.forEach(o -> o.addSubmitWaiter(onSubmit));
        }
        try {
            for (;;) {
                int done = 0;
                for (int i = 0; i < n; i++) {
                    if (fences[i] == null) {
                        fences[i] = objs.get(i).fenceFor(points[i]);
                    }
                    Fence f = fences[i];
                    if (f == null) {
                        continue;
                    }
                    if (available || f.isSignaled()) {
                        if (!all) {
                            return i;
                        }
                        done++;
                    } else if (!watched.contains(f)) {
                        watched.add(f);
                        if (!f.addCallback(onSignal)) {
                            watched.remove(f);
                            waker.poke();
                        }
                    }
                }
                if (done == n) {
                    return first;
                }
                if (!waker.await(deadline, "drm_syncobj_wait")) {
                    throw new ErrnoException(Errno.ETIME, "drm_syncobj_wait: " + (all ? "not all" : "none") + " of "
                            + objs + " signalled within " + timeout);
                }
            }
        } finally {
            if (forSubmit) {
                objs.forEach(o -> o.removeSubmitWaiter(onSubmit));
            }
            for (Fence f : watched) {
                f.removeCallback(onSignal);
            }
        }
    }

    /** {@code drm_syncobj_find_fence} with WAIT_FOR_SUBMIT: waits up to {@code timeout} for {@code point}. */
    static Fence awaitSubmit(SyncObj obj, long point, Duration timeout) {
        ErrnoException.check(timeout != null && !timeout.isNegative(), Errno.EINVAL,
                "drm_syncobj_find_fence: timeout " + timeout + " must be zero or positive");
        long deadline = System.nanoTime() + timeout.toNanos();
        Waker waker = new Waker();
        Runnable onSubmit = waker::poke;
        obj.addSubmitWaiter(onSubmit);
        try {
            for (;;) {
                Fence f = obj.fenceFor(point);
                if (f != null) {
                    return f;
                }
                if (!waker.await(deadline, "drm_syncobj_find_fence")) {
                    throw new ErrnoException(Errno.ETIME, "drm_syncobj_find_fence: point " + point + " of " + obj
                            + " not submitted within " + timeout);
                }
            }
        } finally {
            obj.removeSubmitWaiter(onSubmit);
        }
    }
}
