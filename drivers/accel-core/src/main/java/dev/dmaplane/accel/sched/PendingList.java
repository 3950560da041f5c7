package dev.dmaplane.accel.sched;

import java.util.Collections;
import java.util.LinkedList;
import java.util.List;

/**
 * The jobs a scheduler handed to the hardware ({@code pending_list} of {@code drivers/gpu/drm/scheduler/sched_main.c}),
 * the ring credits they hold ({@code credit_count}, checked by {@code drm_sched_can_queue}) and the job timer
 * ({@code work_tdr}, armed by {@code drm_sched_start_timeout}). Guarded by the scheduler's lock; signals nothing.
 * <p>
 * The timer runs while some job on the hardware is unfinished, counted from when it was armed: as a job begins with
 * none running, or as the oldest job leaves and the next one becomes the oldest. A job takes
 * {@code min(credits, limit)} credits, so a job asking more than the whole ring still runs, alone.
 */
final class PendingList {
    private final int creditLimit;
    private final long timeoutNanos;
    /** Jobs on the hardware, oldest first. */
    private final LinkedList<SchedJob> jobs = new LinkedList<>();
    private int creditCount;
    /** When the job timer fires, on the nanoTime clock; {@code Long.MAX_VALUE} when not armed. */
    private long deadline = Long.MAX_VALUE;

    PendingList(int creditLimit, long timeoutNanos) {
        this.creditLimit = creditLimit;
        this.timeoutNanos = timeoutNanos;
    }

    /** Credits taken by the jobs on the hardware ({@code credit_count}). */
    int creditCount() {
        return creditCount;
    }

    boolean isEmpty() {
        return jobs.isEmpty();
    }

    /** The jobs on the hardware, oldest first; a view that cannot change them. */
    List<SchedJob> jobs() {
        return Collections.unmodifiableList(jobs);
    }

    /** The jobs on the hardware whose finished fence has not signalled, oldest first. */
    List<SchedJob> unfinished() {
        return jobs.stream().filter(j -> !j.isCompleted()).toList();
    }

    /** {@code drm_sched_can_queue}: whether the ring has room for {@code job}'s credits, clamped to the limit. */
    boolean canQueue(SchedJob job) {
        return Math.min(job.credits(), creditLimit) <= creditLimit - creditCount;
    }

    /** {@code drm_sched_job_begin}: {@code job} goes on the hardware with its credits; the timer starts if idle. */
    void begin(SchedJob job, long now) {
        takeCredits(job);
        jobs.addLast(job);
        armTimer(now);
    }

    /** The job takes its credits, unless it holds them already. */
    void takeCredits(SchedJob job) {
        if (!job.holdsCredits) {
            job.holdsCredits = true;
            creditCount += Math.min(job.credits(), creditLimit);
        }
    }

    /** The job gives its credits back, if it holds them. */
    void releaseCredits(SchedJob job) {
        if (job.holdsCredits) {
            job.holdsCredits = false;
            creditCount -= Math.min(job.credits(), creditLimit);
        }
    }

    /**
     * {@code job} leaves the list; if it was the oldest, the timer stops and, when {@code rearm}, starts again for
     * the next one ({@code drm_sched_get_finished_job} restarting the timeout).
     */
    void remove(SchedJob job, boolean rearm, long now) {
        boolean head = !jobs.isEmpty() && jobs.getFirst() == job;
        jobs.remove(job);
        if (head) {
            deadline = Long.MAX_VALUE;
            if (rearm) {
                armTimer(now);
            }
        }
    }

    /** {@code drm_sched_start_timeout}: arms the timer unless it is armed or no job on the hardware is unfinished. */
    void armTimer(long now) {
        if (deadline == Long.MAX_VALUE && jobs.stream().anyMatch(j -> !j.isCompleted())) {
            deadline = now + timeoutNanos;
        }
    }

    /** Stops the timer ({@code cancel_delayed_work}). */
    void disarmTimer() {
        deadline = Long.MAX_VALUE;
    }

    /** {@code drm_sched_fault}: the timer fires at once if any job is on the hardware; whether it will. */
    boolean fireTimer(long now) {
        if (jobs.isEmpty()) {
            return false;
        }
        deadline = now;
        return true;
    }

    /** When the timer fires, on the nanoTime clock; {@code Long.MAX_VALUE} when not armed. */
    long deadline() {
        return deadline;
    }

    /**
     * {@code drm_sched_job_timedout}: once the timer's deadline passed, stops it and returns the oldest unfinished
     * job, the one that hung, or null if none is left; null too before the deadline.
     */
    SchedJob expired(long now) {
        if (now < deadline) {
            return null;
        }
        deadline = Long.MAX_VALUE;
        return jobs.stream().filter(j -> !j.isCompleted()).findFirst().orElse(null);
    }
}
