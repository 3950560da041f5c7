package dev.dmaplane.fence.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * The state of one {@code struct ww_acquire_ctx} ({@code include/linux/ww_mutex.h}): its stamp, how many locks
 * it holds, whether it was wounded, which lock it must take next after an {@code EDEADLK}, and the debug-build
 * state ({@code done_acquire}, finished) the kernel checks under {@code CONFIG_DEBUG_WW_MUTEX_SLOWPATH}. One
 * transaction of one thread: only the thread that created it may lock with it.
 */
public final class AcquireState {
    private final Object wwClass;
    private final String className;
    private final long stamp;
    private final boolean waitDie;
    private final Thread thread;
    private final AtomicInteger acquired = new AtomicInteger();
    /** Set by an older context that wants a lock this one holds (Wound-Wait); cleared once nothing is held. */
    volatile boolean wounded;
    /** The lock that returned {@code EDEADLK}, the only one this context may take next, holding nothing else. */
    volatile WwLockCore contending;
    private volatile boolean done;
    private volatile boolean finished;

    public AcquireState(Object wwClass, String className, long stamp, boolean waitDie) {
        this.wwClass = wwClass;
        this.className = className;
        this.stamp = stamp;
        this.waitDie = waitDie;
        this.thread = Thread.currentThread();
    }

    public long stamp() {
        return stamp;
    }

    public int acquired() {
        return acquired.get();
    }

    public boolean isDone() {
        return done;
    }

    public boolean isFinished() {
        return finished;
    }

    Object wwClass() {
        return wwClass;
    }

    boolean isWaitDie() {
        return waitDie;
    }

    Thread thread() {
        return thread;
    }

    void acquiredOne() {
        acquired.incrementAndGet();
    }

    void releasedOne() {
        acquired.decrementAndGet();
    }

    /** {@code __ww_ctx_less}: whether this context is the younger one (the larger stamp, wrap-safe). */
    boolean isYoungerThan(AcquireState other) {
        return stamp - other.stamp > 0;
    }

    /** {@code ww_acquire_done}: no more locks will be taken; a second call or one after fini is EINVAL. */
    public void done() {
        ErrnoException.check(!finished, Errno.EINVAL, this + " is already finished");
        ErrnoException.check(!done, Errno.EINVAL, "ww_acquire_done called twice on " + this);
        done = true;
    }

    /** {@code ww_acquire_fini}: EBUSY while locks are still held, EINVAL the second time. */
    public void fini() {
        ErrnoException.check(!finished, Errno.EINVAL, "ww_acquire_fini called twice on " + this);
        int held = acquired.get();
        ErrnoException.check(held == 0, Errno.EBUSY, this + " still holds " + held + " lock(s)");
        finished = true;
    }

    @Override
    public String toString() {
        return "ww_acquire_ctx(" + className + " stamp " + stamp + ")";
    }
}
