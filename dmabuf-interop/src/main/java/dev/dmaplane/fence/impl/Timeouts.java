package dev.dmaplane.fence.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.time.Duration;

/** Timeout arguments as {@code dma_fence_wait_timeout} takes them: never negative ({@code -EINVAL}), saturating. */
public final class Timeouts {
    private Timeouts() {
    }

    /** {@code timeout} in nanoseconds, {@link Long#MAX_VALUE} for anything longer; EINVAL if null or negative. */
    public static long toNanos(Duration timeout) {
        ErrnoException.check(timeout != null, Errno.EINVAL, "timeout is null");
        ErrnoException.check(!timeout.isNegative(), Errno.EINVAL, "timeout " + timeout + " is negative");
        try {
            return timeout.toNanos();
        } catch (ArithmeticException tooLong) {
            return Long.MAX_VALUE;
        }
    }

    /** The nanoseconds left until {@code deadline} (a {@link System#nanoTime()} value), 0 once it passed. */
    public static long remaining(long deadline) {
        return Math.max(0, deadline - System.nanoTime());
    }

    /** The deadline {@code nanos} from now, clamped so that {@link #remaining} never wraps. */
    public static long deadline(long nanos) {
        long now = System.nanoTime();
        return nanos > Long.MAX_VALUE / 2 ? now + Long.MAX_VALUE / 2 : now + nanos;
    }

    /** Throws {@code EINTR} for an interrupted wait, keeping the thread's interrupt status set. */
    public static ErrnoException interrupted(String what) {
        Thread.currentThread().interrupt();
        return new ErrnoException(Errno.EINTR, "interrupted while waiting for " + what);
    }
}
