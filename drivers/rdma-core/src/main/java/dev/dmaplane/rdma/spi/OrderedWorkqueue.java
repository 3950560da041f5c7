package dev.dmaplane.rdma.spi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * A workqueue of one worker thread ({@code alloc_ordered_workqueue}): work and delayed work run one at a time, in
 * order, on a daemon thread named after the queue; cancelled delayed work leaves the queue at once. Shut down, it
 * is gone as {@code destroy_workqueue} leaves it: {@link #awaitTermination} returns true only once the worker
 * thread has ended, where a plain executor reports termination from inside its last worker, which can still be
 * alive a moment later (a test counting the driver's threads at its end then finds it).
 */
public final class OrderedWorkqueue extends ScheduledThreadPoolExecutor {
    private static final Logger LOG = LoggerFactory.getLogger(OrderedWorkqueue.class);
    private final String name;
    /** The worker threads made: one at a time, a new one only after work killed the last. */
    private final List<Thread> workers;

    private OrderedWorkqueue(String name, List<Thread> workers) {
        super(1, r -> {
            Thread t = Thread.ofPlatform().name(name).daemon().unstarted(r);
            workers.add(t);
            return t;
        });
        this.name = name;
        this.workers = workers;
        setRemoveOnCancelPolicy(true);
    }

    /**
     * A queue whose worker thread is named {@code name} ({@code ib_cm}, {@code ib_mad-rxe0}, {@code siw-cm-siw0}).
     *
     * @throws ErrnoException {@code EINVAL} for a null or blank name
     */
    public static OrderedWorkqueue alloc(String name) {
        if (name == null || name.isBlank()) {
            throw new ErrnoException(Errno.EINVAL, "a workqueue needs a name, not '" + name + "'");
        }
        return new OrderedWorkqueue(name, new CopyOnWriteArrayList<>());
    }

    /** Whether the calling thread is this queue's worker: work waiting for the queue's end would wait for itself. */
    public boolean onWorker() {
        return workers.contains(Thread.currentThread());
    }

    /**
     * Waits until the queue is shut down, its work done and its worker thread ended, for at most {@code timeout}.
     * Asked by the worker itself, it answers at once: the queue cannot end while the work asking runs.
     *
     * @return whether it ended in time
     */
    @Override
    public boolean awaitTermination(long timeout, TimeUnit unit) throws InterruptedException {
        if (onWorker()) {
            return isTerminated();
        }
        long deadline = System.nanoTime() + unit.toNanos(timeout);
        if (!super.awaitTermination(timeout, unit)) {
            return false;
        }
        for (Thread t : workers) {
            long left = deadline - System.nanoTime();
            if (left <= 0 ? t.isAlive() : !t.join(Duration.ofNanos(left))) {
                return false;
            }
        }
        return true;
    }

    /**
     * {@code destroy_workqueue}: the queue shut down, the work still queued dropped (delayed work nobody cancelled
     * included, as its owner is leaving), and its worker thread waited for, at most {@code timeout}; a worker that
     * did not end in time is logged as an error. Asked by the worker itself, it waits for nothing: the thread ends
     * when the work asking returns.
     *
     * @return whether the worker thread ended in time (false at once on the worker)
     * @throws ErrnoException {@code EINVAL} for a null or negative timeout; {@code EINTR} when the caller was
     *                        interrupted waiting, its interrupt status set again (the queue is shut down all the same)
     */
    public boolean destroy(Duration timeout) {
        if (timeout == null || timeout.isNegative()) {
            throw new ErrnoException(Errno.EINVAL, "destroy_workqueue " + name + ": timeout " + timeout);
        }
        shutdownNow();
        if (onWorker()) {
            return false;
        }
        try {
            if (awaitTermination(timeout.toNanos(), TimeUnit.NANOSECONDS)) {
                return true;
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, "interrupted waiting for the " + name + " thread", e);
        }
        LOG.error("the {} thread did not end within {}", name, timeout);
        return false;
    }
}
