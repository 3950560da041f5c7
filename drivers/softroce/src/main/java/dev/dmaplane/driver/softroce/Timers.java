package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.WcStatus;

import java.util.Collection;
import java.util.concurrent.TimeUnit;

/**
 * The requester's per-QP retransmission and RNR timers ({@code retransmit_timer} in {@code rxe_comp.c},
 * {@code rnr_nak_timer} in {@code rxe_req.c}): a deadline per QP, armed and fired by the thread running the
 * {@link Engine}, which wakes its worker for the earliest.
 */
final class Timers {
    /**
     * Longest transport timeout used: the QP's {@code timeout} (4.096 us * 2^timeout, IBTA 9.7.6.1.3) is honoured up
     * to this, and 0 ("infinite") means this too, so that a peer that vanished is noticed within seconds.
     */
    static final long MAX_TIMEOUT_NS = TimeUnit.SECONDS.toNanos(1);
    /** Longest RNR delay used. */
    static final long MAX_RNR_NS = TimeUnit.MILLISECONDS.toNanos(2);
    /** Shortest transport timeout used: a soft HCA shares its CPU. */
    static final long MIN_TIMEOUT_NS = TimeUnit.MILLISECONDS.toNanos(10);
    /** A thread running the engine inline looks at the timers itself once in this many passes. */
    static final int INLINE_TIMER_PASSES = 64;

    private final Engine e;
    // guarded by the engine's lock
    private int inlinePassesSinceTimers;
    /** The earliest deadline armed since the last round ended (0: none). */
    private long earliestArmed;

    Timers(Engine e) {
        this.e = e;
    }

    /** Arms {@code c}'s transport or RNR timer for {@code deadline} (a {@link System#nanoTime} value). */
    void arm(QpCtx c, long deadline) {
        c.deadline = deadline;
        if (earliestArmed == 0 || deadline - earliestArmed < 0) {
            earliestArmed = deadline;
        }
    }

    /**
     * Counts an inline pass; whether it is the one in {@link #INLINE_TIMER_PASSES} that looks at the timers (so busy
     * traffic that keeps the worker out still sees its timers fire).
     */
    boolean inlineTurn() {
        return ++inlinePassesSinceTimers >= INLINE_TIMER_PASSES;
    }

    /** The earliest deadline armed since the last call (0: none), forgotten by this call. */
    long takeArmed() {
        long armed = earliestArmed;
        earliestArmed = 0;
        return armed;
    }

    /** Fires the due timers of {@code qps}; returns the earliest pending deadline or 0. */
    long fire(Collection<QpCtx> qps) {
        inlinePassesSinceTimers = 0;
        long now = System.nanoTime();
        long next = 0;
        for (QpCtx c : qps) {
            c.dropFlushed();
            if (c.inflight.isEmpty()) {
                continue;
            }
            if (c.deadline - now <= 0) {
                if (c.rnrWait) {
                    c.rnrWait = false;
                    e.requester.retransmit(c, -1);
                } else {
                    e.counters.timeouts++;
                    if (c.retryLeft-- > 0) {
                        e.counters.retries++;
                        e.requester.retransmit(c, -1);
                    } else {
                        e.counters.retryExceeded++;
                        e.completer.finish(c, WcStatus.RETRY_EXC_ERR);
                        e.requester.run(c);
                        continue;
                    }
                }
            }
            if (!c.inflight.isEmpty() && (next == 0 || c.deadline - next < 0)) {
                next = c.deadline;
            }
        }
        return next;
    }

    /** The transport timeout of a QP's {@code timeout} attribute, within {@link #MIN_TIMEOUT_NS}..{@link #MAX_TIMEOUT_NS}. */
    static long timeoutNs(int timeout) {
        if (timeout == 0 || timeout > 31) {
            return MAX_TIMEOUT_NS;
        }
        return Math.max(MIN_TIMEOUT_NS, Math.min(MAX_TIMEOUT_NS, 4096L << timeout));
    }

    /** IBTA table 45 (minimum RNR NAK timer field), in microseconds, capped to keep retries short. */
    static long rnrNs(int code) {
        long[] us = {655360, 10, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640, 960, 1280, 1920, 2560, 3840,
                5120, 7680, 10240, 15360, 20480, 30720, 40960, 61440, 81920, 122880, 163840, 245760, 327680, 491520};
        return Math.min(MAX_RNR_NS, us[code & 31] * 1000L);
    }
}
