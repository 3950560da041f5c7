package dev.dmaplane.accel.sched;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.Fences;
import dev.dmaplane.fence.Reservation;
import dev.dmaplane.fence.ResvUsage;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;

/**
 * A {@code struct drm_sched_job} ({@code drivers/gpu/drm/scheduler/sched_main.c}): a unit of work for one
 * {@link SchedEntity}, taking {@link #credits()} of the ring. Its life is the kernel's: {@link #init}, dependencies
 * added, {@link #arm} (the {@code scheduled} and {@code finished} fences come into being, {@code drm_sched_fence}
 * of {@code sched_fence.c}), {@link #push} (queued on the entity); the scheduler runs it once its dependencies have
 * signalled and the ring has room; the finished fence signals when the hardware fence does, carrying its error.
 * Thread-safe.
 */
public final class SchedJob {
    private enum State { INIT, ARMED, PUSHED }

    private final SchedEntity entity;
    private final Object payload;
    private final int credits;
    private final List<Fence> dependencies = new ArrayList<>();
    private final AtomicBoolean completed = new AtomicBoolean();
    private State state = State.INIT;
    private Fence scheduled;
    private Fence finished;
    /** The hardware fence ({@code s_fence->parent}); guarded by the scheduler's lock. */
    Fence parent;
    /** The callback on {@link #parent}; guarded by the scheduler's lock. */
    Consumer<Fence> parentCallback;
    /** Whether the job holds ring credits now; guarded by the scheduler's lock. */
    boolean holdsCredits;
    /** Marked by {@link Scheduler#stop} as the job that caused a timeout. */
    volatile boolean guilty;
    /** Order of submission, for FIFO selection among entities ({@code oldest_job_waiting}). */
    long submitOrder;
    /** The dependency the scheduler registered a wake-up on; guarded by the scheduler's lock. */
    Fence waitingOn;

    private SchedJob(SchedEntity entity, int credits, Object payload) {
        this.entity = entity;
        this.credits = credits;
        this.payload = payload;
    }

    /**
     * {@code drm_sched_job_init}: a job of {@code credits} ring credits for {@code entity}. {@code EINVAL} for a
     * null entity or zero or negative credits, as the kernel refuses zero credits; credits above the scheduler's
     * limit are clamped to it when the job is selected, as {@code drm_sched_can_queue} does.
     *
     * @param payload the driver's data for {@link SchedBackend#runJob}, may be null
     */
    public static SchedJob init(SchedEntity entity, int credits, Object payload) {
        ErrnoException.check(entity != null, Errno.EINVAL, "drm_sched_job_init: entity is null");
        ErrnoException.check(credits > 0, Errno.EINVAL, "drm_sched_job_init: credits " + credits
                + " must be positive");
        return new SchedJob(entity, credits, payload);
    }

    public SchedEntity entity() {
        return entity;
    }

    public Object payload() {
        return payload;
    }

    public int credits() {
        return credits;
    }

    /**
     * {@code drm_sched_job_add_dependency}: the job runs only after {@code fence} signalled. Only the latest fence
     * of one context is kept, as the kernel does, and container fences are unwrapped. {@code EINVAL} for null or
     * after {@link #arm}.
     */
    public synchronized void addDependency(Fence fence) {
        ErrnoException.check(fence != null, Errno.EINVAL, "drm_sched_job_add_dependency: fence is null");
        ErrnoException.check(state == State.INIT, Errno.EINVAL, "drm_sched_job_add_dependency(" + fence
                + ") on a job already " + state);
        for (Fence f : Fences.unwrap(fence)) {
            addOne(f);
        }
    }

    private void addOne(Fence fence) {
        for (int i = 0; i < dependencies.size(); i++) {
            Fence d = dependencies.get(i);
            if (d.context() == fence.context()) {
                if (fence.isLater(d)) {
                    dependencies.set(i, fence);
                }
                return;
            }
        }
        dependencies.add(fence);
    }

    /**
     * {@code drm_sched_job_add_resv_dependencies}: every fence of {@code resv} whose usage is {@code usage} or lower
     * becomes a dependency.
     */
    public synchronized void addResvDependencies(Reservation resv, ResvUsage usage) {
        ErrnoException.check(resv != null, Errno.EINVAL, "drm_sched_job_add_resv_dependencies: resv is null");
        ErrnoException.check(usage != null, Errno.EINVAL, "drm_sched_job_add_resv_dependencies: usage is null");
        ErrnoException.check(state == State.INIT, Errno.EINVAL, "drm_sched_job_add_resv_dependencies(" + resv
                + ") on a job already " + state);
        for (Fence f : resv.fences(usage)) {
            addOne(f);
        }
    }

    /**
     * {@code drm_sched_job_add_implicit_dependencies}: a write waits for the KERNEL, WRITE and READ fences of
     * {@code resv}, a read for the KERNEL and WRITE ones ({@link ResvUsage#forAccess}).
     */
    public void addImplicitDependencies(Reservation resv, boolean write) {
        addResvDependencies(resv, ResvUsage.forAccess(write));
    }

    /** The dependencies added so far. */
    public synchronized List<Fence> dependencies() {
        return List.copyOf(dependencies);
    }

    /**
     * {@code drm_sched_job_arm}: creates the scheduled and finished fences with the entity's next seqno. After
     * this the job must be pushed. {@code EINVAL} if armed twice, {@code ECANCELED} on an entity that was
     * destroyed or whose scheduler is finished, with nothing created.
     */
    public synchronized void arm() {
        ErrnoException.check(state == State.INIT, Errno.EINVAL, "drm_sched_job_arm on a job already " + state);
        Fence[] fences = entity.newFences();
        scheduled = fences[0];
        finished = fences[1];
        state = State.ARMED;
    }

    /**
     * {@code drm_sched_entity_push_job}: queues the armed job on its entity and wakes the scheduler. {@code EINVAL}
     * unless armed exactly once before. Pushed on an entity killed since {@link #arm}, the job is cancelled at
     * once: both fences signal, the finished one with {@code ECANCELED}.
     */
    public void push() {
        synchronized (this) {
            ErrnoException.check(state == State.ARMED, Errno.EINVAL, "drm_sched_entity_push_job of a job "
                    + (state == State.INIT ? "not armed" : "already pushed"));
            state = State.PUSHED;
        }
        entity.push(this);
    }

    /** The {@code scheduled} fence: signals when the job is handed to the hardware. {@code EINVAL} before {@link #arm}. */
    public synchronized Fence scheduled() {
        ErrnoException.check(scheduled != null, Errno.EINVAL, "scheduled fence of a job not armed");
        return scheduled;
    }

    /** The {@code finished} fence: signals when the job is done, with the hardware fence's error. {@code EINVAL} before {@link #arm}. */
    public synchronized Fence finished() {
        ErrnoException.check(finished != null, Errno.EINVAL, "finished fence of a job not armed");
        return finished;
    }

    /** The hardware fence {@link SchedBackend#runJob} returned, while the job is on the hardware. */
    public Optional<Fence> hardwareFence() {
        return entity.scheduler().parentOf(this);
    }

    /**
     * Signals the finished fence with {@code error} (or none), once: whoever comes first (the hardware fence's
     * callback, a stop, a kill, fini) completes the job. The guilty job of a timeout carries {@code ETIME}.
     */
    boolean complete(Errno error) {
        if (!claim()) {
            return false;
        }
        signalFences(error);
        return true;
    }

    /** Takes the right to complete the job; only the first caller gets it. */
    boolean claim() {
        return completed.compareAndSet(false, true);
    }

    /** Signals the scheduled fence if needed and the finished fence, after a successful {@link #claim()}. */
    void signalFences(Errno error) {
        Fence s = scheduled();
        if (!s.isSignaled()) {
            s.signal();
        }
        Errno e = guilty ? Errno.ETIME : error;
        if (e != null) {
            finished.setError(e);
        }
        finished.signal();
    }

    boolean isCompleted() {
        return completed.get();
    }

    /** The first dependency not signalled yet, dropping signalled ones and those of the job's own entity. */
    synchronized Fence firstPendingDependency() {
        while (!dependencies.isEmpty()) {
            Fence d = dependencies.getFirst();
            if (d.isSignaled() || entity.ownsFence(d)) {
                dependencies.removeFirst();
            } else {
                return d;
            }
        }
        return null;
    }

    @Override
    public String toString() {
        Fence f;
        synchronized (this) {
            f = finished;
        }
        return "job " + (f == null ? "(unarmed)" : f.seqno()) + " of " + entity;
    }
}
