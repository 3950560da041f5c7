package dev.dmaplane.fence;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.impl.FenceCore;
import dev.dmaplane.fence.impl.Timeouts;

import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.function.Consumer;

/**
 * A {@code struct dma_fence} ({@code include/linux/dma-fence.h}): the completion of one operation on a
 * {@link FenceContext}'s timeline, identified by its context and seqno. It signals exactly once, optionally carrying
 * an error set before that; waiters and callbacks learn of it. Created by {@link FenceContext#createFence()} or, as
 * a container over other fences, by {@link Fences#all}. Thread-safe.
 */
public final class Fence {
    private final FenceContext context;
    private final long seqno;
    private final List<Fence> components;
    private final FenceCore core;

    Fence(FenceContext context, long seqno, List<Fence> components) {
        this.context = context;
        this.seqno = seqno;
        this.components = components;
        this.core = new FenceCore(this, context.ops(), context.tracer().orElse(null));
    }

    public FenceContext context() {
        return context;
    }

    public long seqno() {
        return seqno;
    }

    /**
     * {@code dma_fence_signal}: marks the fence done, stamps the time, wakes every waiter and runs every callback
     * in this thread, each exactly once. A fence signals once: a second call fails with {@code EINVAL}, as the
     * kernel's returns {@code -EINVAL}. If a callback throws, the others still run and the first failure is
     * rethrown afterwards; the fence stays signalled.
     */
    public void signal() {
        core.signal();
    }

    /**
     * {@code dma_fence_set_error}: records why the operation failed, to be reported once the fence signals. Only
     * a pending fence takes an error ({@code EINVAL} after it signalled); a later call replaces an earlier error.
     */
    public void setError(Errno error) {
        core.setError(error);
    }

    /** The error set with {@link #setError}, if any ({@code fence->error}). */
    public Optional<Errno> error() {
        return core.error();
    }

    /**
     * {@code dma_fence_get_status}: 0 while the fence is pending, 1 once it signalled, or the negative errno set with
     * {@link #setError} once it signalled with one (asking the driver's {@link FenceOps#signaled} poll first, as
     * {@link #isSignaled} does).
     */
    public int status() {
        if (!isSignaled()) {
            return 0;
        }
        return error().map(e -> -e.number()).orElse(1);
    }

    /**
     * {@code dma_fence_is_signaled}: whether the fence has signalled; if not, the driver's
     * {@link FenceOps#signaled} poll is asked and a {@code true} answer signals the fence here.
     */
    public boolean isSignaled() {
        return core.isSignaled();
    }

    /** When the fence signalled, on the {@link System#nanoTime()} clock ({@code fence->timestamp}). */
    public OptionalLong timestampNanos() {
        return core.timestampNanos();
    }

    /** {@code dma_fence_enable_sw_signaling}: calls the driver's {@link FenceOps#enableSignaling} hook, once. */
    public void enableSignaling() {
        core.enableSignaling();
    }

    /**
     * {@code dma_fence_add_callback}: runs {@code callback} once, in the thread that signals the fence. Returns
     * {@code false}, without registering it, when the fence has already signalled (the kernel's {@code -ENOENT}):
     * the caller then knows the event happened and acts itself. Enables signalling. Registering the same callback
     * object twice on one fence is {@code EINVAL}.
     */
    public boolean addCallback(Consumer<Fence> callback) {
        return core.addCallback(callback);
    }

    /**
     * {@code dma_fence_remove_callback}: {@code true} if {@code callback} was pending and now never runs,
     * {@code false} if it was not registered or has already been handed to the signalling thread.
     */
    public boolean removeCallback(Consumer<Fence> callback) {
        return core.removeCallback(callback);
    }

    /**
     * {@code dma_fence_wait_timeout(fence, true, timeout)}: blocks until the fence signals or {@code timeout}
     * passes; whether it signalled. A zero timeout only tests. An interrupt ends the wait with {@code EINTR}
     * (the kernel's {@code -ERESTARTSYS}), leaving the thread's interrupt status set; a negative timeout is
     * {@code EINVAL}.
     */
    public boolean await(Duration timeout) {
        return core.await(Timeouts.toNanos(timeout));
    }

    /**
     * {@code dma_fence_is_later}: whether this fence comes after {@code other} on their common timeline. Fences
     * of different contexts have no order: {@code EINVAL}.
     */
    public boolean isLater(Fence other) {
        ErrnoException.check(other != null, Errno.EINVAL, "fence to compare with " + this + " is null");
        ErrnoException.check(other.context == context, Errno.EINVAL,
                "fences " + this + " and " + other + " are on different contexts and have no order");
        return seqno > other.seqno;
    }

    /** {@code dma_fence_is_container}: whether this fence stands for others ({@link Fences#all}). */
    public boolean isContainer() {
        return !components.isEmpty();
    }

    /** The fences a container stands for, empty for an ordinary fence. */
    List<Fence> components() {
        return components;
    }

    @Override
    public String toString() {
        return context.driverName() + ":" + context.timelineName() + "#" + context.id() + "." + seqno;
    }
}
