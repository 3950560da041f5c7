package dev.dmaplane.accel.sched;

import dev.dmaplane.fence.Fence;
import org.osgi.annotation.versioning.ConsumerType;

/**
 * {@code struct drm_sched_backend_ops} ({@code include/drm/gpu_scheduler.h}): what a driver gives its
 * {@link Scheduler}. Every hook runs without the scheduler's lock held; {@link #runJob} and {@link #timedOutJob}
 * run on the scheduler's worker thread, one at a time.
 */
@ConsumerType
public interface SchedBackend {
    /**
     * {@code run_job}: hands {@code job} to the hardware and returns the fence the hardware signals when it is done
     * (the job's parent fence), or {@code null} when nothing had to run. An {@code ErrnoException} thrown here ends
     * the job with that errno on its finished fence, as an {@code ERR_PTR} return does.
     */
    Fence runJob(SchedJob job);

    /**
     * {@code timedout_job}: {@code job}'s hardware fence did not signal within the scheduler's timeout. A driver
     * that resets the engine does what {@code sched_main.c} documents for a reset: {@link Scheduler#stop}
     * with {@code job} as the bad job, the reset, optionally {@link Scheduler#resubmitJobs}, then
     * {@link Scheduler#start}; the bad job's finished fence then carries {@code ETIME}.
     */
    TimeoutStatus timedOutJob(SchedJob job);

    /** {@code free_job}: the job's finished fence has signalled and the scheduler is done with it. */
    default void freeJob(SchedJob job) {
    }

    /**
     * {@code cancel_job}: called by {@link Scheduler#fini} for each job still on the hardware; the driver stops it
     * and signals its hardware fence with {@code ECANCELED}. Jobs whose hardware fence is still pending afterwards
     * are completed by the scheduler with {@code ECANCELED}.
     */
    default void cancelJob(SchedJob job) {
    }
}
