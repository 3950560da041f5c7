package dev.dmaplane.driver.siw;

import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * One endpoint's MPA timer ({@code cep->mpa_timer}: a {@code SIW_CM_WORK_MPATIMEOUT} work that
 * {@code siw_cm_queue_work} queues on {@code siw_cm_wq}, {@link MpaTimers}). It either fires once or is cancelled,
 * never both: Linux decides under the endpoint's {@code in_use} mark ({@code siw_cep_set_inuse}), here the first of
 * {@link #cancel} and the firing wins, so the endpoint's thread that read its MPA frame and the timeout never both
 * act on the endpoint.
 */
final class MpaTimer {
    private static final int ARMED = 0;
    private static final int CANCELLED = 1;
    private static final int FIRED = 2;

    /** No timer: cancelling it reports it cancelled. */
    static final MpaTimer NONE = new MpaTimer(CANCELLED);

    private final AtomicInteger state;
    private volatile ScheduledFuture<?> work;

    private MpaTimer(int state) {
        this.state = new AtomicInteger(state);
    }

    /** A timer whose timeout runs through {@link #fire} once queued, unless {@link #cancel} came first. */
    static MpaTimer armed() {
        return new MpaTimer(ARMED);
    }

    /** The work on the queue: let go of when the timer is cancelled. */
    void queued(ScheduledFuture<?> w) {
        work = w;
        if (state.get() == CANCELLED) {
            w.cancel(false);
        }
    }

    /** The work of {@code SIW_CM_WORK_MPATIMEOUT}: runs {@code timeout} unless the timer was cancelled. */
    void fire(Runnable timeout) {
        if (state.compareAndSet(ARMED, FIRED)) {
            timeout.run();
        }
    }

    /**
     * {@code siw_cancel_mpatimer}.
     *
     * @return true when the timeout never runs (cancelled now or before, or no timer); false when it ran or is
     *         running, and the endpoint is the timeout's
     */
    boolean cancel() {
        if (state.compareAndSet(ARMED, CANCELLED)) {
            ScheduledFuture<?> w = work;
            if (w != null) {
                w.cancel(false);
            }
            return true;
        }
        return state.get() == CANCELLED;
    }
}
