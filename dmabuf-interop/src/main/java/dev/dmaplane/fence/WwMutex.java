package dev.dmaplane.fence;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.impl.WwLockCore;

import java.util.concurrent.atomic.AtomicLong;

/**
 * A wound/wait mutex, {@code struct ww_mutex} ({@code Documentation/locking/ww-mutex-design.rst},
 * {@code kernel/locking/ww_mutex.h}): a mutex that transactions ({@link WwAcquireContext}) can take in any order
 * without deadlock, because on a conflict the younger transaction is told to back off with {@code EDEADLK},
 * by the rules of its class's {@link WwAlgorithm}. The lock is owned by a thread: only that thread unlocks it.
 * It is not reentrant.
 * <p>
 * Back-off protocol: on {@code EDEADLK}, unlock every lock the context holds, then {@link #lockSlow} the
 * contended one, then take the others again ({@link Reservations#lockAll} does this for reservations).
 */
public final class WwMutex {
    private static final AtomicLong NEXT_ID = new AtomicLong();

    private final WwClass wwClass;
    private final WwLockCore core;

    /** {@code ww_mutex_init}. */
    public WwMutex(WwClass wwClass) {
        this("ww_mutex-" + NEXT_ID.incrementAndGet(), wwClass);
    }

    /** {@code ww_mutex_init}, named for error messages. */
    public WwMutex(String name, WwClass wwClass) {
        ErrnoException.check(wwClass != null, Errno.EINVAL, "ww_class of mutex '" + name + "' is null");
        ErrnoException.check(name != null && !name.isBlank(), Errno.EINVAL, "ww_mutex name '" + name + "' is empty");
        this.wwClass = wwClass;
        this.core = new WwLockCore(wwClass, wwClass.algorithm() == WwAlgorithm.WAIT_DIE, name);
    }

    public WwClass wwClass() {
        return wwClass;
    }

    /**
     * {@code ww_mutex_lock}: sleeps until the lock is taken by {@code ctx}, or fails: {@code EDEADLK} when the
     * context must back off (it holds locks and, by its class's algorithm, loses to an older context: the
     * context then remembers this lock as the contended one), {@code EALREADY} when {@code ctx} already holds
     * this lock. {@code ctx == null} locks it as a plain mutex, which never fails that way. Misuse is
     * {@code EINVAL} (another class, after {@code done()} or close, a different lock than the contended one after
     * {@code EDEADLK}, or the contended one while still holding others), {@code EPERM} (a context of another
     * thread) or {@code EDEADLK} (the thread already holds it).
     */
    public void lock(WwAcquireContext ctx) {
        core.lock(ctx == null ? null : ctx.state(), false);
    }

    /** {@code ww_mutex_lock_interruptible}: as {@link #lock(WwAcquireContext)}, or {@code EINTR} if interrupted. */
    public void lockInterruptible(WwAcquireContext ctx) {
        core.lock(ctx == null ? null : ctx.state(), true);
    }

    /**
     * {@code ww_mutex_lock_slow}: after {@code EDEADLK} on this lock and unlocking everything else, sleeps until
     * {@code ctx} holds it. Cannot fail with {@code EDEADLK}. {@code EINVAL} if {@code ctx} still holds locks,
     * had no {@code EDEADLK}, or had it on another lock.
     */
    public void lockSlow(WwAcquireContext ctx) {
        core.lockSlow(ctx == null ? null : ctx.state());
    }

    /** {@code mutex_lock} on the w/w mutex without a context (method 4 of the design document). */
    public void lock() {
        core.lock(null, false);
    }

    /** {@code ww_mutex_trylock(lock, NULL)}: whether the lock was free and is now held by this thread. */
    public boolean tryLock() {
        return core.tryLock();
    }

    /** {@code ww_mutex_unlock}: {@code EPERM} unless this thread holds it. */
    public void unlock() {
        core.unlock();
    }

    /** {@code ww_mutex_is_locked}. */
    public boolean isLocked() {
        return core.isLocked();
    }

    /** Whether {@code ctx} holds this lock. */
    public boolean isLockedBy(WwAcquireContext ctx) {
        return ctx != null && core.isLockedBy(ctx.state());
    }

    /** Whether this thread holds the lock, with or without a context (lockdep's {@code lockdep_is_held}). */
    public boolean isHeldByCurrentThread() {
        return core.isHeldByCurrentThread();
    }

    @Override
    public String toString() {
        return core.toString();
    }
}
