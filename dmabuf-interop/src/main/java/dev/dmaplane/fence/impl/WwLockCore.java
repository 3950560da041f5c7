package dev.dmaplane.fence.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A {@code struct ww_mutex} with its wait list, after {@code kernel/locking/ww_mutex.h} and the ww parts of
 * {@code __mutex_lock_common} in {@code kernel/locking/mutex.c}.
 * <p>
 * The wait list is guarded by {@code waitLock} (the kernel's {@code wait_lock}). Waiters with a context are kept
 * in stamp order, oldest first; waiters without one are queued FIFO between them. A waiter sleeps with
 * {@link LockSupport#park}; {@code wake_up_process} is {@link LockSupport#unpark}. An unlock wakes the first
 * waiter. Every rule below is the kernel's:
 * <ul>
 * <li>a context that holds no lock never gets {@code EDEADLK}, so it can always wait for the lock it lost on
 *     ({@code __ww_mutex_kill});</li>
 * <li>Wait-Die: a context dies when the holder, or a waiter queued ahead of it, is older
 *     ({@code __ww_mutex_check_kill}); queueing behind an older waiter kills it at once, and younger waiters
 *     that hold locks are woken so they can die ({@code __ww_mutex_add_waiter}, {@code __ww_mutex_die});</li>
 * <li>Wound-Wait: an older context that queues for a lock held by a younger one that holds locks too marks the
 *     holder wounded and wakes it ({@code __ww_mutex_wound}); a wounded context dies only when it next finds a
 *     lock contended, lazily ({@code __ww_mutex_check_kill}); one that takes a lock ahead of older waiters lets
 *     them wound it ({@code __ww_mutex_check_waiters}).</li>
 * </ul>
 */
public final class WwLockCore {
    private final Object wwClass;
    private final boolean waitDie;
    private final String name;
    private final ReentrantLock waitLock = new ReentrantLock();
    private final List<Waiter> waiters = new ArrayList<>();
    private volatile Thread owner;
    private volatile AcquireState holdCtx;

    /** One sleeping locker ({@code struct mutex_waiter}); compared by identity. */
    private static final class Waiter {
        final Thread thread;
        final AcquireState ctx;

        Waiter(Thread thread, AcquireState ctx) {
            this.thread = thread;
            this.ctx = ctx;
        }
    }

    public WwLockCore(Object wwClass, boolean waitDie, String name) {
        this.wwClass = wwClass;
        this.waitDie = waitDie;
        this.name = name;
    }

    /**
     * {@code ww_mutex_lock} / {@code ww_mutex_lock_interruptible}; {@code ctx} may be null for a plain mutex
     * lock. Throws EDEADLK (back off), EALREADY (held by {@code ctx}), EINTR (interruptible only) or, for misuse
     * the kernel's debug build warns about, EINVAL / EPERM.
     */
    public void lock(AcquireState ctx, boolean interruptible) {
        Thread me = Thread.currentThread();
        if (ctx != null) {
            checkContext(ctx, me);
        }
        boolean interruptedMeanwhile = false;
        waitLock.lock();
        try {
            if (owner == me) {
                throw new ErrnoException(Errno.EDEADLK, "thread " + me.getName() + " already holds " + this
                        + (holdCtx == null ? " without a context" : " under " + holdCtx)
                        + ": locking it again would deadlock");
            }
            if (ctx != null && ctx.acquired() == 0) {
                ctx.wounded = false;
            }
            if (owner == null) {
                acquire(me, ctx);
                if (ctx != null) {
                    checkWaiters(ctx);
                }
                return;
            }
            Waiter w = new Waiter(me, ctx);
            if (ctx == null) {
                waiters.add(w);
            } else {
                addWaiter(w, ctx);
            }
            try {
                for (;;) {
                    if (owner == null) {
                        boolean first = waiters.getFirst() == w;
                        removeWaiter(w);
                        acquire(me, ctx);
                        if (ctx != null && !waitDie && !first) {
                            checkWaiters(ctx);
                        }
                        return;
                    }
                    if (interruptible && Thread.interrupted()) {
                        throw Timeouts.interrupted(toString());
                    }
                    if (ctx != null) {
                        checkKill(w, ctx);
                    }
                    waitLock.unlock();
                    try {
                        LockSupport.park(this);
                    } finally {
                        waitLock.lock();
                    }
                    if (!interruptible && Thread.interrupted()) {
                        interruptedMeanwhile = true;
                    }
                }
            } finally {
                if (removeWaiter(w) && owner == null) {
                    wakeFirst();
                }
            }
        } finally {
            waitLock.unlock();
            if (interruptedMeanwhile) {
                me.interrupt();
            }
        }
    }

    /**
     * {@code ww_mutex_lock_slow}: after {@code EDEADLK} and releasing every other lock, sleeps until this lock,
     * the contended one, is acquired. Holding nothing, the context cannot be told to back off again.
     */
    public void lockSlow(AcquireState ctx) {
        ErrnoException.check(ctx != null, Errno.EINVAL, "ww_mutex_lock_slow on " + this + " needs a context");
        checkContext(ctx, Thread.currentThread());
        ErrnoException.check(ctx.acquired() == 0, Errno.EINVAL, "ww_mutex_lock_slow on " + this + ": " + ctx
                + " still holds " + ctx.acquired() + " lock(s); release them all first");
        ErrnoException.check(ctx.contending != null, Errno.EINVAL,
                "ww_mutex_lock_slow on " + this + " without a preceding EDEADLK for " + ctx);
        lock(ctx, false);
    }

    /** {@code ww_mutex_trylock(lock, NULL)}: takes the lock only if it is free. */
    public boolean tryLock() {
        waitLock.lock();
        try {
            if (owner != null) {
                return false;
            }
            acquire(Thread.currentThread(), null);
            return true;
        } finally {
            waitLock.unlock();
        }
    }

    /** {@code ww_mutex_unlock}: only by the thread that holds it (EPERM otherwise); wakes the first waiter. */
    public void unlock() {
        Thread me = Thread.currentThread();
        waitLock.lock();
        try {
            Thread holder = owner;
            ErrnoException.check(holder == me, Errno.EPERM, holder == null
                    ? "unlock of " + this + ", which is not locked"
                    : "unlock of " + this + " by thread " + me.getName() + "; it is held by " + holder.getName());
            AcquireState ctx = holdCtx;
            if (ctx != null) {
                ctx.releasedOne();
            }
            holdCtx = null;
            owner = null;
            wakeFirst();
        } finally {
            waitLock.unlock();
        }
    }

    public boolean isLocked() {
        return owner != null;
    }

    /** Whether {@code ctx} holds this lock ({@code ww_mutex->ctx == ctx}). */
    public boolean isLockedBy(AcquireState ctx) {
        return ctx != null && holdCtx == ctx;
    }

    public boolean isHeldByCurrentThread() {
        return owner == Thread.currentThread();
    }

    /** The rules the kernel's debug build checks before a lock with a context ({@code ww_mutex_lock_acquired}). */
    private void checkContext(AcquireState ctx, Thread me) {
        ErrnoException.check(ctx.thread() == me, Errno.EPERM, ctx + " belongs to thread " + ctx.thread().getName()
                + ", not " + me.getName());
        ErrnoException.check(!ctx.isFinished(), Errno.EINVAL, ctx + " is finished; lock with a new context");
        if (holdCtx == ctx) {
            throw new ErrnoException(Errno.EALREADY, this + " is already held by " + ctx);
        }
        ErrnoException.check(ctx.wwClass() == wwClass, Errno.EINVAL, ctx + " is of another class than " + this);
        ErrnoException.check(!ctx.isDone(), Errno.EINVAL, ctx + " called ww_acquire_done; it takes no more locks");
        WwLockCore contended = ctx.contending;
        ErrnoException.check(contended == null || contended == this, Errno.EINVAL, ctx + " got EDEADLK on "
                + contended + " and must take that lock next, not " + this);
        ErrnoException.check(contended == null || ctx.acquired() == 0, Errno.EINVAL, ctx + " got EDEADLK on "
                + this + " and must release its " + ctx.acquired() + " other lock(s) before taking it");
    }

    private void acquire(Thread me, AcquireState ctx) {
        owner = me;
        holdCtx = ctx;
        if (ctx != null) {
            ctx.acquiredOne();
            if (ctx.contending == this) {
                ctx.contending = null;
            }
        }
    }

    /** {@code __ww_mutex_kill}: EDEADLK, remembering the contended lock, if {@code ctx} holds any lock. */
    private void kill(AcquireState ctx, String why) {
        if (ctx.acquired() > 0) {
            ctx.contending = this;
            throw new ErrnoException(Errno.EDEADLK, ctx + " must back off from " + this + ": " + why);
        }
    }

    /** {@code __ww_mutex_check_kill}, run by a waiter each time it finds the lock still taken. */
    private void checkKill(Waiter w, AcquireState ctx) {
        if (ctx.acquired() == 0) {
            return;
        }
        if (!ctx.isWaitDie()) {
            if (ctx.wounded) {
                kill(ctx, "it was wounded by an older context");
            }
            return;
        }
        AcquireState hold = holdCtx;
        if (hold != null && ctx.isYoungerThan(hold)) {
            kill(ctx, "the holder " + hold + " is older");
        }
        for (Waiter cur : waiters) {
            if (cur == w) {
                break;
            }
            if (cur.ctx != null) {
                kill(ctx, "an older " + cur.ctx + " waits ahead of it");
            }
        }
    }

    /** {@code __ww_mutex_add_waiter}: queue in stamp order, dying or wounding as the algorithm says. */
    private void addWaiter(Waiter w, AcquireState ctx) {
        int pos = waiters.size();
        for (int i = waiters.size() - 1; i >= 0; i--) {
            Waiter cur = waiters.get(i);
            if (cur.ctx == null) {
                continue;
            }
            if (ctx.isYoungerThan(cur.ctx)) {
                if (waitDie) {
                    kill(ctx, "an older " + cur.ctx + " is already waiting");
                }
                break;
            }
            pos = i;
            die(cur, ctx);
        }
        waiters.add(pos, w);
        if (!waitDie) {
            wound(ctx, holdCtx);
        }
    }

    /** {@code __ww_mutex_die}: wake a younger waiter that holds locks, so that it sees it must die. */
    private boolean die(Waiter waiter, AcquireState ctx) {
        if (!waitDie) {
            return false;
        }
        if (waiter.ctx.acquired() > 0 && waiter.ctx.isYoungerThan(ctx)) {
            LockSupport.unpark(waiter.thread);
        }
        return true;
    }

    /** {@code __ww_mutex_wound}: an older {@code ctx} that holds locks wounds a younger holder and wakes it. */
    private boolean wound(AcquireState ctx, AcquireState hold) {
        Thread holder = owner;
        if (hold == null || holder == null) {
            return false;
        }
        if (ctx.acquired() > 0 && hold.isYoungerThan(ctx)) {
            hold.wounded = true;
            if (holder != Thread.currentThread()) {
                LockSupport.unpark(holder);
            }
            return true;
        }
        return false;
    }

    /** {@code __ww_mutex_check_waiters}: {@code ctx} just took the lock; let waiters behind it die or wound it. */
    private void checkWaiters(AcquireState ctx) {
        for (Waiter cur : waiters) {
            if (cur.ctx == null) {
                continue;
            }
            if (die(cur, ctx) || wound(cur.ctx, ctx)) {
                break;
            }
        }
    }

    private boolean removeWaiter(Waiter w) {
        for (int i = 0; i < waiters.size(); i++) {
            if (waiters.get(i) == w) {
                waiters.remove(i);
                return true;
            }
        }
        return false;
    }

    private void wakeFirst() {
        if (!waiters.isEmpty()) {
            LockSupport.unpark(waiters.getFirst().thread);
        }
    }

    @Override
    public String toString() {
        return "ww_mutex '" + name + "'";
    }
}
