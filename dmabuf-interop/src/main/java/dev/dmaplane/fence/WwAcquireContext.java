package dev.dmaplane.fence;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.impl.AcquireState;

/**
 * A {@code struct ww_acquire_ctx} ({@code include/linux/ww_mutex.h}, {@code ww-mutex-design.rst}): one
 * transaction that locks several {@link WwMutex}es or {@link Reservation}s of one {@link WwClass}. Its stamp,
 * taken once at {@code ww_acquire_init}, is kept across back-offs so that the transaction ages and eventually wins.
 * <p>
 * A context belongs to the thread that created it (the kernel's {@code ctx->task}): locking with it from another
 * thread is {@code EPERM}. {@link #done()} ({@code ww_acquire_done}) ends the acquire phase: locking with it
 * afterwards is {@code EINVAL}. {@link #close()} ({@code ww_acquire_fini}) fails with {@code EBUSY} while it
 * still holds locks; any use after close is {@code EINVAL}.
 */
public final class WwAcquireContext implements AutoCloseable {
    private final WwClass wwClass;
    private final AcquireState state;

    /** {@code ww_acquire_init}: a new transaction of {@code wwClass}, with the class's next stamp. */
    public WwAcquireContext(WwClass wwClass) {
        ErrnoException.check(wwClass != null, Errno.EINVAL, "ww_class of the acquire context is null");
        this.wwClass = wwClass;
        this.state = new AcquireState(wwClass, wwClass.name(), wwClass.nextStamp(),
                wwClass.algorithm() == WwAlgorithm.WAIT_DIE);
    }

    public WwClass wwClass() {
        return wwClass;
    }

    /** The ticket: a smaller stamp is an older transaction, which wins conflicts. */
    public long stamp() {
        return state.stamp();
    }

    /** How many locks this context holds now ({@code ctx->acquired}). */
    public int acquired() {
        return state.acquired();
    }

    /** {@code ww_acquire_done}: marks the end of the acquire phase; EINVAL if called twice or after close. */
    public void done() {
        state.done();
    }

    public boolean isDone() {
        return state.isDone();
    }

    public boolean isClosed() {
        return state.isFinished();
    }

    /** {@code ww_acquire_fini}: EBUSY while locks are held (nothing changes), EINVAL the second time. */
    @Override
    public void close() {
        state.fini();
    }

    AcquireState state() {
        return state;
    }

    @Override
    public String toString() {
        return state.toString();
    }
}
