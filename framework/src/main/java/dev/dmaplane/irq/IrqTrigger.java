package dev.dmaplane.irq;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.concurrent.TimeUnit;

/**
 * An eventfd-like counter a vector signals in place of a handler, as VFIO's MSI-X triggers do ({@code eventfd_signal}
 * in {@code fs/eventfd.c}): each signal adds one, and a read returns the sum and resets it to zero.
 */
public final class IrqTrigger {
    private long count;

    /** Adds one and wakes a waiting reader ({@code eventfd_signal}). */
    public synchronized void signal() {
        count++;
        notifyAll();
    }

    /** The current count, without resetting it. */
    public synchronized long count() {
        return count;
    }

    /**
     * Waits up to {@code timeout} for a non-zero count, then returns it and resets it to zero (an eventfd
     * {@code read}); returns 0 if the time ran out first.
     *
     * @throws ErrnoException       {@code EINVAL} for a negative timeout
     * @throws InterruptedException if the waiting thread is interrupted
     */
    public synchronized long await(long timeout, TimeUnit unit) throws InterruptedException {
        if (timeout < 0) {
            throw new ErrnoException(Errno.EINVAL, "eventfd wait timeout " + timeout + " is negative");
        }
        long deadline = System.nanoTime() + unit.toNanos(timeout);
        while (count == 0) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                return 0;
            }
            TimeUnit.NANOSECONDS.timedWait(this, left);
        }
        long n = count;
        count = 0;
        return n;
    }
}
