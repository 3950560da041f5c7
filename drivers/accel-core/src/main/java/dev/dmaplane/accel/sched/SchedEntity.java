package dev.dmaplane.accel.sched;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;

import java.time.Duration;
import java.util.ArrayDeque;

/**
 * A {@code struct drm_sched_entity} ({@code drivers/gpu/drm/scheduler/sched_entity.c}): a queue of jobs of one
 * submitter at one {@link SchedPriority}, run in the order pushed. It owns two fence contexts, one for the
 * scheduled and one for the finished fences of its jobs ({@code dma_fence_context_alloc(2)}). Thread-safe; its
 * state is guarded by its scheduler's lock.
 */
public final class SchedEntity {
    private final Scheduler scheduler;
    private final SchedPriority priority;
    private final FenceContext scheduledContext;
    private final FenceContext finishedContext;
    /** Jobs pushed and not yet handed to the hardware. */
    final ArrayDeque<SchedJob> queue = new ArrayDeque<>();
    /** Killed: no more jobs ({@code entity->stopped}). */
    boolean stopped;
    /** The finished fence of the last job handed to the hardware ({@code entity->last_scheduled}). */
    Fence lastScheduled;

    SchedEntity(Scheduler scheduler, SchedPriority priority, String name) {
        this.scheduler = scheduler;
        this.priority = priority;
        this.scheduledContext = FenceContext.allocate("drm_sched", name + ".scheduled",
                scheduler.tracer().orElse(null));
        this.finishedContext = FenceContext.allocate("drm_sched", name + ".finished",
                scheduler.tracer().orElse(null));
    }

    /**
     * {@code drm_sched_entity_init}: a new entity of {@code priority} on {@code scheduler}. {@code EINVAL} for
     * nulls, {@code ECANCELED} on a scheduler that was finished.
     */
    public static SchedEntity create(Scheduler scheduler, SchedPriority priority) {
        ErrnoException.check(scheduler != null, Errno.EINVAL, "drm_sched_entity_init: scheduler is null");
        ErrnoException.check(priority != null, Errno.EINVAL, "drm_sched_entity_init: priority is null");
        return scheduler.addEntity(priority);
    }

    public Scheduler scheduler() {
        return scheduler;
    }

    public SchedPriority priority() {
        return priority;
    }

    /** The context of the scheduled fences; the finished fences' is {@link #finishedContext()}. */
    public FenceContext scheduledContext() {
        return scheduledContext;
    }

    public FenceContext finishedContext() {
        return finishedContext;
    }

    /** Jobs pushed and not yet handed to the hardware. */
    public int queued() {
        return scheduler.queuedOf(this);
    }

    /**
     * {@code drm_sched_entity_flush}: waits until every pushed job has been handed to the hardware, at most
     * {@code timeout}; whether that happened. {@code EINTR} if interrupted.
     */
    public boolean flush(Duration timeout) {
        ErrnoException.check(timeout != null && !timeout.isNegative(), Errno.EINVAL,
                "drm_sched_entity_flush: timeout " + timeout + " must be zero or positive");
        return scheduler.flush(this, timeout);
    }

    /**
     * {@code drm_sched_entity_kill}: stops the entity; the jobs still queued are never run. Each gets its
     * scheduled fence signalled and its finished fence signalled with {@code ECANCELED}, in queue order and
     * only after the finished fence of the entity's last job on the hardware, so the entity's fences keep
     * signalling in seqno order. The kernel sets {@code -ESRCH} here; issue 12 asks {@code ECANCELED} for jobs
     * cancelled by teardown, the errno {@code drm_sched_start} and the {@code cancel_job} of {@code drm_sched_fini}
     * use, so every teardown reports the same one. Idempotent.
     */
    public void kill() {
        scheduler.kill(this);
    }

    /** {@code drm_sched_entity_destroy}: {@link #flush} for at most {@code timeout}, then {@link #kill}. */
    public void destroy(Duration timeout) {
        flush(timeout);
        kill();
    }

    /** Creates the next pair of fences for {@link SchedJob#arm}; {@code ECANCELED} once killed. */
    Fence[] newFences() {
        return scheduler.newFences(this);
    }

    Fence[] createFencePair() {
        return new Fence[] {scheduledContext.createFence(), finishedContext.createFence()};
    }

    void push(SchedJob job) {
        scheduler.push(this, job);
    }

    /** Whether {@code fence} is one of this entity's own scheduled or finished fences. */
    boolean ownsFence(Fence fence) {
        return fence.context() == scheduledContext || fence.context() == finishedContext;
    }

    @Override
    public String toString() {
        return "entity " + finishedContext.timelineName() + " (" + priority + ")";
    }
}
