package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.OrderedWorkqueue;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;

/**
 * A device's MPA timers: {@code siw_cm_wq}, the work queue on which {@code siw_cm_queue_work} delays
 * {@code SIW_CM_WORK_MPATIMEOUT}, as one thread ({@code siw-cm-DEV}), and the two durations of {@code siw_cm.h}:
 * {@code MPAREQ_TIMEOUT} (10 s), which the initiator waits for the MPA reply after sending its request
 * ({@code siw_connect}), and {@code MPAREP_TIMEOUT} (5 s), which the responder waits for the MPA request once TCP
 * accepted the connection ({@code siw_accept_newconn}). There is no timer on the consumer's answer to a request.
 */
final class MpaTimers {
    private static final Logger LOG = LoggerFactory.getLogger(MpaTimers.class);
    /** {@code MPAREQ_TIMEOUT}: how long the initiator waits for the MPA reply. */
    static final Duration MPAREQ_TIMEOUT = Duration.ofSeconds(10);
    /** {@code MPAREP_TIMEOUT}: how long the responder waits for the MPA request. */
    static final Duration MPAREP_TIMEOUT = Duration.ofSeconds(5);
    private static final Duration JOIN = Duration.ofSeconds(10);

    private volatile Duration awaitReply = MPAREQ_TIMEOUT;
    private volatile Duration awaitRequest = MPAREP_TIMEOUT;
    private OrderedWorkqueue wq;

    /** Starts the device's timer thread. */
    synchronized void start(String dev) {
        wq = OrderedWorkqueue.alloc("siw-cm-" + dev);
    }

    /** Stops the timer thread, dropping what is still queued, and waits for it to end. */
    void stop() {
        OrderedWorkqueue e;
        synchronized (this) {
            e = wq;
            wq = null;
        }
        if (e == null) {
            return;
        }
        try {
            e.destroy(JOIN);
        } catch (ErrnoException x) {
            LOG.debug("siw: {}; the device stops all the same", x.getMessage()); // EINTR, the interrupt status kept
        }
    }

    /**
     * Sets the durations for the timers armed from now on (the tests' knob; Linux's are constants).
     *
     * @throws ErrnoException {@code EINVAL} for a duration that is not positive
     */
    void set(Duration request, Duration reply) {
        for (Duration d : new Duration[]{request, reply}) {
            if (d == null || d.isNegative() || d.isZero()) {
                throw new ErrnoException(Errno.EINVAL, "siw: MPA timeout " + d + " is not positive");
            }
        }
        awaitRequest = request;
        awaitReply = reply;
    }

    Duration awaitReply() {
        return awaitReply;
    }

    Duration awaitRequest() {
        return awaitRequest;
    }

    /** How many timers wait on the queue: cancelled ones leave it at once. */
    synchronized int queued() {
        return wq == null ? 0 : wq.getQueue().size();
    }

    /** The initiator's timer, armed once its MPA request left: {@code timeout} runs after {@link #awaitReply()}. */
    MpaTimer forReply(Runnable timeout) {
        return arm(awaitReply, timeout);
    }

    /** The responder's timer, armed once TCP accepted: {@code timeout} runs after {@link #awaitRequest()}. */
    MpaTimer forRequest(Runnable timeout) {
        return arm(awaitRequest, timeout);
    }

    private synchronized MpaTimer arm(Duration after, Runnable timeout) {
        if (wq == null) {
            return MpaTimer.NONE; // the device stops: its endpoints are closed without a timer
        }
        MpaTimer t = MpaTimer.armed();
        try {
            t.queued(wq.schedule(() -> t.fire(timeout), after.toNanos(), TimeUnit.NANOSECONDS));
        } catch (RejectedExecutionException e) {
            return MpaTimer.NONE;
        }
        return t;
    }
}
