package dev.dmaplane.fence.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceOps;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/**
 * The state of one {@code struct dma_fence} ({@code drivers/dma-buf/dma-fence.c}): the signalled bit, the error,
 * the timestamp and the callback list, all under the fence's own lock as the kernel keeps them under
 * {@code fence->lock}. Callbacks and the driver's {@link FenceOps} hooks run after that lock is dropped, so they
 * may call back into the fence.
 */
public final class FenceCore {
    private final Fence fence;
    private final FenceOps ops;
    private final Tracer tracer;

    private final ReentrantLock lock = new ReentrantLock();
    private final Condition signalledCondition = lock.newCondition();
    private volatile boolean signaled;
    private volatile Errno error;
    private volatile long timestamp;
    private boolean signalingEnabled;
    private final List<Consumer<Fence>> callbacks = new ArrayList<>();

    public FenceCore(Fence fence, FenceOps ops, Tracer tracer) {
        this.fence = fence;
        this.ops = ops;
        this.tracer = tracer;
    }

    /** {@code dma_fence_signal}: EINVAL when the fence had already signalled. */
    public void signal() {
        if (!signalOnce()) {
            throw new ErrnoException(Errno.EINVAL, "fence " + fence + " has already signalled");
        }
    }

    /** Signals unless some other path got there first; whether this call did it. */
    public boolean signalOnce() {
        List<Consumer<Fence>> toRun;
        lock.lock();
        try {
            if (signaled) {
                return false;
            }
            timestamp = System.nanoTime();
            signaled = true;
            toRun = List.copyOf(callbacks);
            callbacks.clear();
            signalledCondition.signalAll();
        } finally {
            lock.unlock();
        }
        if (tracer != null) {
            Errno e = error;
            tracer.emit(TraceKind.FENCE, fence.context().driverName(), -1, 0,
                    "signal " + fence + (e == null ? "" : " error=" + e.name()));
        }
        runCallbacks(toRun);
        return true;
    }

    /** Runs every callback even if one throws; the first failure is rethrown afterwards with the rest suppressed. */
    private void runCallbacks(List<Consumer<Fence>> toRun) {
        RuntimeException failure = null;
        for (Consumer<Fence> cb : toRun) {
            try {
                cb.accept(fence);
            } catch (RuntimeException e) {
                if (failure == null) {
                    failure = e;
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    /** {@code dma_fence_set_error}: only before the fence signals. */
    public void setError(Errno errno) {
        ErrnoException.check(errno != null, Errno.EINVAL, "error of fence " + fence + " is null");
        lock.lock();
        try {
            ErrnoException.check(!signaled, Errno.EINVAL,
                    "cannot set error " + errno.name() + " on fence " + fence + ": it has already signalled");
            error = errno;
        } finally {
            lock.unlock();
        }
    }

    public Optional<Errno> error() {
        return Optional.ofNullable(error);
    }

    /** Whether the signalled bit is set, without asking the driver. */
    public boolean signaledFlag() {
        return signaled;
    }

    /** {@code dma_fence_is_signaled}: the bit, else the driver's poll, which signals the fence when it says so. */
    public boolean isSignaled() {
        if (signaled) {
            return true;
        }
        if (ops.signaled(fence)) {
            signalOnce();
            return true;
        }
        return false;
    }

    public OptionalLong timestampNanos() {
        return signaled ? OptionalLong.of(timestamp) : OptionalLong.empty();
    }

    /** {@code dma_fence_enable_sw_signaling}: calls the driver's hook once, signalling if it says it is done. */
    public void enableSignaling() {
        boolean call;
        lock.lock();
        try {
            call = !signalingEnabled && !signaled;
            signalingEnabled = true;
        } finally {
            lock.unlock();
        }
        if (call && !ops.enableSignaling(fence)) {
            signalOnce();
        }
    }

    /** {@code dma_fence_add_callback}; {@code false} where the kernel returns {@code -ENOENT}. */
    public boolean addCallback(Consumer<Fence> callback) {
        ErrnoException.check(callback != null, Errno.EINVAL, "callback for fence " + fence + " is null");
        if (signaled) {
            return false;
        }
        enableSignaling();
        lock.lock();
        try {
            if (signaled) {
                return false;
            }
            for (Consumer<Fence> cb : callbacks) {
                ErrnoException.check(cb != callback, Errno.EINVAL,
                        "callback " + callback + " is already registered on fence " + fence);
            }
            callbacks.add(callback);
            return true;
        } finally {
            lock.unlock();
        }
    }

    /** {@code dma_fence_remove_callback}: whether it was still pending (not yet run, not being run). */
    public boolean removeCallback(Consumer<Fence> callback) {
        lock.lock();
        try {
            for (int i = 0; i < callbacks.size(); i++) {
                if (callbacks.get(i) == callback) {
                    callbacks.remove(i);
                    return true;
                }
            }
            return false;
        } finally {
            lock.unlock();
        }
    }

    /** {@code dma_fence_wait_timeout(fence, true, timeout)}: whether it signalled in time; EINTR if interrupted. */
    public boolean await(long nanos) {
        if (isSignaled()) {
            return true;
        }
        enableSignaling();
        lock.lock();
        try {
            long remaining = nanos;
            while (!signaled) {
                if (remaining <= 0) {
                    break;
                }
                remaining = signalledCondition.awaitNanos(remaining);
            }
        } catch (InterruptedException e) {
            throw Timeouts.interrupted("fence " + fence);
        } finally {
            lock.unlock();
        }
        return isSignaled();
    }
}
