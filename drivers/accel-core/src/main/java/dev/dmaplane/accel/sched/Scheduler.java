package dev.dmaplane.accel.sched;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/**
 * A {@code struct drm_gpu_scheduler} ({@code drivers/gpu/drm/scheduler/sched_main.c}): one per hardware ring. Run
 * queues per {@link SchedPriority}, the higher served first; within one, the entity whose oldest job waits longest
 * first ({@code DRM_SCHED_POLICY_FIFO}); within an entity, jobs in push order. A job runs when its dependencies
 * have signalled and the ring has {@link SchedJob#credits()} free of {@link #creditLimit()}
 * ({@code drm_sched_can_queue}); if the entity chosen cannot fit, nothing of lower rank overtakes it.
 * <p>
 * One worker thread per scheduler runs jobs, frees finished ones and handles timeouts ({@code drm_sched_job_timedout}):
 * when the oldest job on the hardware has not finished within the timeout, counted from when it started or the job
 * before it finished, {@link SchedBackend#timedOutJob} runs on the worker. {@link #stop}, {@link #resubmitJobs} and
 * {@link #start} are the reset sequence the kernel documents. {@link #fini} stops and joins the worker and cancels
 * every job left with {@code ECANCELED}; every fence signals. Events go to the tracer as {@link TraceKind#SCHED}.
 * Fences are never signalled with the scheduler's lock held.
 * <p>Size: about 690 lines, over the project's 600, as {@code sched_main.c} is one file: the worker's pass, the
 * completion of a job and the reset sequence ({@code stop}, {@code resubmitJobs}, {@code start}, {@code fini}) each
 * change the run queues, the pending list and the worker's state together under one lock, and each signals fences
 * and calls the backend outside it; cut apart, the pieces would hand each other the lock. What holds state of its
 * own lives apart: the entity and job sides in {@link SchedEntity} and {@link SchedJob}, a run queue's choice of
 * entity in {@link RunQueue}, the jobs on the hardware with their credits and the job timer in {@link PendingList}.
 */
public final class Scheduler {
    private static final Logger LOG = LoggerFactory.getLogger(Scheduler.class);
    private static final Duration FINI_JOIN = Duration.ofSeconds(10);

    private final String name;
    private final int creditLimit;
    private final long timeoutNanos;
    private final SchedBackend backend;
    private final Tracer tracer;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition wake = lock.newCondition();
    private final Map<SchedPriority, RunQueue> runQueues = new EnumMap<>(SchedPriority.class);
    /** Jobs on the hardware with their credits and the job timer. */
    private final PendingList pending;
    /** Finished jobs waiting for {@link SchedBackend#freeJob}. */
    private final ArrayDeque<SchedJob> toFree = new ArrayDeque<>();
    private final AtomicLong submitOrder = new AtomicLong();
    private final Thread worker;
    private int entityCount;
    private boolean stopped;
    private boolean finishing;
    private boolean finished;
    private boolean workerBusy;
    /** Completions between claiming a job and queueing it for freeing, in any thread. */
    private int completing;

    private Scheduler(SchedulerConfig config, SchedBackend backend, Tracer tracer) {
        this.name = config.name();
        this.creditLimit = config.creditLimit();
        this.timeoutNanos = config.timeout().toNanos();
        this.backend = backend;
        this.tracer = tracer;
        this.pending = new PendingList(creditLimit, timeoutNanos);
        for (SchedPriority p : SchedPriority.values()) {
            runQueues.put(p, new RunQueue());
        }
        this.worker = Thread.ofPlatform().name("drm_sched-" + name).daemon().unstarted(this::workerLoop);
    }

    /**
     * {@code drm_sched_init}: a scheduler with its worker thread started. {@code EINVAL} for a null or blank name,
     * a credit limit below 1, a timeout that is null or not positive, a null backend.
     *
     * @param tracer where run, done, timeout and cancel events go, or {@code null}
     */
    public static Scheduler create(SchedulerConfig config, SchedBackend backend, Tracer tracer) {
        ErrnoException.check(config != null, Errno.EINVAL, "drm_sched_init: config is null");
        ErrnoException.check(config.name() != null && !config.name().isBlank(), Errno.EINVAL,
                "drm_sched_init: name '" + config.name() + "' is empty");
        ErrnoException.check(config.creditLimit() > 0, Errno.EINVAL, "drm_sched_init: credit limit "
                + config.creditLimit() + " of " + config.name() + " must be positive");
        ErrnoException.check(config.timeout() != null && config.timeout().isPositive(), Errno.EINVAL,
                "drm_sched_init: timeout " + config.timeout() + " of " + config.name() + " must be positive");
        ErrnoException.check(backend != null, Errno.EINVAL, "drm_sched_init: backend of " + config.name()
                + " is null");
        Scheduler s = new Scheduler(config, backend, tracer);
        s.worker.start();
        return s;
    }

    public String name() {
        return name;
    }

    public int creditLimit() {
        return creditLimit;
    }

    public Duration timeout() {
        return Duration.ofNanos(timeoutNanos);
    }

    public Optional<Tracer> tracer() {
        return Optional.ofNullable(tracer);
    }

    /** Credits taken by the jobs on the hardware ({@code credit_count}). */
    public int creditCount() {
        lock.lock();
        try {
            return pending.creditCount();
        } finally {
            lock.unlock();
        }
    }

    /** Jobs on the hardware, not yet finished ({@code pending_list}). */
    public int pendingJobs() {
        lock.lock();
        try {
            return pending.unfinished().size();
        } finally {
            lock.unlock();
        }
    }

    /** Whether the worker thread is still alive (false once {@link #fini} returned). */
    public boolean isWorkerAlive() {
        return worker.isAlive();
    }

    SchedEntity addEntity(SchedPriority priority) {
        lock.lock();
        try {
            ErrnoException.check(!finishing, Errno.ECANCELED, "drm_sched_entity_init on " + name
                    + ", which was finished");
            SchedEntity e = new SchedEntity(this, priority, name + ".e" + (++entityCount));
            runQueues.get(priority).add(e);
            return e;
        } finally {
            lock.unlock();
        }
    }

    Fence[] newFences(SchedEntity entity) {
        lock.lock();
        try {
            ErrnoException.check(!entity.stopped && !finishing, Errno.ECANCELED, "drm_sched_job_arm on " + entity
                    + ", which was " + (finishing ? "finished with its scheduler " + name : "killed"));
            return entity.createFencePair();
        } finally {
            lock.unlock();
        }
    }

    void push(SchedEntity entity, SchedJob job) {
        lock.lock();
        try {
            if (!entity.stopped && !finishing) {
                job.submitOrder = submitOrder.incrementAndGet();
                entity.queue.addLast(job);
                wake.signalAll();
                trace(job, "queue");
                return;
            }
        } finally {
            lock.unlock();
        }
        trace(job, "cancel: pushed to a killed entity");
        job.complete(Errno.ECANCELED);
        free(job);
    }

    int queuedOf(SchedEntity entity) {
        lock.lock();
        try {
            return entity.queue.size();
        } finally {
            lock.unlock();
        }
    }

    Optional<Fence> parentOf(SchedJob job) {
        lock.lock();
        try {
            return Optional.ofNullable(job.parent);
        } finally {
            lock.unlock();
        }
    }

    boolean flush(SchedEntity entity, Duration timeout) {
        long end = System.nanoTime() + timeout.toNanos();
        lock.lock();
        try {
            while (!entity.queue.isEmpty() && !entity.stopped) {
                long left = end - System.nanoTime();
                if (left <= 0) {
                    return false;
                }
                wake.awaitNanos(left);
            }
            return entity.queue.isEmpty();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, "drm_sched_entity_flush of " + entity + " interrupted");
        } finally {
            lock.unlock();
        }
    }

    void kill(SchedEntity entity) {
        List<SchedJob> killed;
        Fence prev;
        lock.lock();
        try {
            entity.stopped = true;
            runQueues.get(entity.priority()).remove(entity);
            killed = new ArrayList<>(entity.queue);
            entity.queue.clear();
            prev = entity.lastScheduled;
            wake.signalAll();
        } finally {
            lock.unlock();
        }
        cancelInOrder(killed, prev, "entity killed");
    }

    /**
     * Cancels {@code jobs} in queue order once {@code after} (the entity's last job on the hardware) signalled, in
     * one loop ({@code drm_sched_entity_kill} with {@code drm_sched_entity_kill_jobs_work}). Only the first killed
     * job waits on a foreign fence; each later one waits on the job before it, which this loop has just
     * signalled, so chaining a callback per job would only nest one stack frame set per queued job.
     */
    private void cancelInOrder(List<SchedJob> jobs, Fence after, String why) {
        if (jobs.isEmpty()) {
            return;
        }
        Consumer<Fence> cancelAll = f -> {
            for (SchedJob job : jobs) {
                trace(job, "cancel: " + why);
                job.complete(Errno.ECANCELED);
                free(job);
            }
        };
        if (after == null || !after.addCallback(cancelAll)) {
            cancelAll.accept(after);
        }
    }

    /**
     * {@code drm_sched_stop}: parks the worker (waits until it is not inside {@link SchedBackend#runJob}, unless
     * called from the worker itself, as a timed-out handler is) and detaches the scheduler from the hardware
     * fences of the jobs on the hardware, whose credits return; jobs that finished meanwhile are left to complete.
     * {@code bad}, the job that timed out, is marked guilty: its finished fence will carry {@code ETIME}
     * (the error {@code amdgpu_job_timedout} sets on the hung job). {@code bad} may be null.
     */
    public void stop(SchedJob bad) {
        List<SchedJob> detached = new ArrayList<>();
        lock.lock();
        try {
            stopped = true;
            while (workerBusy && Thread.currentThread() != worker) {
                wake.awaitUninterruptibly();
            }
            if (bad != null && bad.entity().scheduler() == this) {
                bad.guilty = true;
            }
            for (SchedJob job : pending.jobs().reversed()) {
                if (job.parent != null && job.parent.removeCallback(job.parentCallback)) {
                    job.parent = null;
                    job.parentCallback = null;
                    pending.releaseCredits(job);
                    detached.add(job);
                }
            }
            pending.disarmTimer();
        } finally {
            lock.unlock();
        }
        for (SchedJob job : detached) {
            trace(job, "stop: detached from the hardware");
        }
    }

    /**
     * {@code drm_sched_resubmit_jobs} (deprecated in the kernel, kept for drivers whose reset loses the ring): while
     * stopped, runs every job left on the hardware again, except the guilty one, and keeps the new hardware fences
     * for {@link #start}. {@code EINVAL} unless stopped.
     */
    public void resubmitJobs() {
        List<SchedJob> again;
        lock.lock();
        try {
            ErrnoException.check(stopped, Errno.EINVAL, "drm_sched_resubmit_jobs on " + name + ", not stopped");
            again = pending.unfinished().stream().filter(j -> !j.guilty && j.parent == null).toList();
        } finally {
            lock.unlock();
        }
        for (SchedJob job : again) {
            Fence hw = runOnBackend(job);
            lock.lock();
            try {
                job.parent = hw;
            } finally {
                lock.unlock();
            }
        }
    }

    /**
     * {@code drm_sched_start}: after a reset, jobs with a hardware fence wait for it again and take their credits
     * back; jobs without one (their work was lost) complete with {@code ECANCELED}, the guilty one with
     * {@code ETIME}; the timer is re-armed and the worker resumes. {@code EINVAL} unless stopped.
     */
    public void start() {
        List<SchedJob> lost = new ArrayList<>();
        List<SchedJob> rearm = new ArrayList<>();
        lock.lock();
        try {
            ErrnoException.check(stopped, Errno.EINVAL, "drm_sched_start on " + name + ", not stopped");
            for (SchedJob job : pending.jobs()) {
                if (job.isCompleted() || job.parentCallback != null) {
                    continue;
                }
                if (job.parent != null) {
                    pending.takeCredits(job);
                    rearm.add(job);
                } else {
                    lost.add(job);
                }
            }
        } finally {
            lock.unlock();
        }
        for (SchedJob job : rearm) {
            watchParent(job, job.parent);
        }
        for (SchedJob job : lost) {
            done(job, Errno.ECANCELED);
        }
        lock.lock();
        try {
            stopped = false;
            pending.armTimer(System.nanoTime());
            wake.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** {@code drm_sched_fault}: the driver saw a hardware fault; the timeout handling runs at once. */
    public void fault() {
        lock.lock();
        try {
            if (pending.fireTimer(System.nanoTime())) {
                wake.signalAll();
            }
        } finally {
            lock.unlock();
        }
    }

    /**
     * {@code drm_sched_fini}: stops and joins the worker, then cancels everything left: queued jobs of every entity
     * complete with {@code ECANCELED} (entities are killed), jobs on the hardware get {@link SchedBackend#cancelJob}
     * and, if their hardware fence still has not signalled, complete with {@code ECANCELED}. Every job is freed.
     * Idempotent. {@code EBUSY} if the worker does not stop within 10 s (a backend hook that never returns).
     */
    public void fini() {
        lock.lock();
        try {
            if (finished) {
                return;
            }
            finishing = true;
            wake.signalAll();
        } finally {
            lock.unlock();
        }
        try {
            if (Thread.currentThread() != worker && !worker.join(FINI_JOIN)) {
                throw new ErrnoException(Errno.EBUSY, "drm_sched_fini: worker of " + name + " did not stop within "
                        + FINI_JOIN);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, "drm_sched_fini of " + name + " interrupted");
        }
        List<SchedEntity> entities = new ArrayList<>();
        List<SchedJob> onHardware;
        lock.lock();
        try {
            runQueues.values().forEach(q -> q.addAllTo(entities));
            onHardware = pending.unfinished();
        } finally {
            lock.unlock();
        }
        for (SchedEntity e : entities) {
            e.kill();
        }
        for (SchedJob job : onHardware) {
            invokeCancel(job);
        }
        for (SchedJob job : onHardware) {
            lock.lock();
            try {
                if (job.parent != null) {
                    job.parent.removeCallback(job.parentCallback);
                }
            } finally {
                lock.unlock();
            }
            done(job, Errno.ECANCELED);
        }
        lock.lock();
        try {
            long end = System.nanoTime() + FINI_JOIN.toNanos();
            while (completing > 0) {
                long left = end - System.nanoTime();
                ErrnoException.check(left > 0, Errno.EBUSY, "drm_sched_fini: " + completing + " job(s) of " + name
                        + " still completing after " + FINI_JOIN);
                wake.awaitNanos(left);
            }
            finished = true;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, "drm_sched_fini of " + name + " interrupted");
        } finally {
            lock.unlock();
        }
        freeAll();
    }

    private void invokeCancel(SchedJob job) {
        try {
            backend.cancelJob(job);
        } catch (RuntimeException e) {
            LOG.error("drm_sched {}: cancel_job of {} failed; completing it with ECANCELED", name, job, e);
        }
    }

    private void workerLoop() {
        for (;;) {
            SchedJob toRun = null;
            SchedJob timedOut = null;
            lock.lock();
            try {
                for (;;) {
                    if (finishing) {
                        return;
                    }
                    if (!toFree.isEmpty()) {
                        break;
                    }
                    if (!stopped) {
                        toRun = selectJob();
                        if (toRun != null) {
                            workerBusy = true;
                            break;
                        }
                        timedOut = pending.expired(System.nanoTime());
                        if (timedOut != null) {
                            workerBusy = true;
                            break;
                        }
                    }
                    long wait = stopped ? Long.MAX_VALUE : pending.deadline() - System.nanoTime();
                    if (wait == Long.MAX_VALUE) {
                        wake.awaitUninterruptibly();
                    } else if (wait > 0) {
                        wake.awaitNanos(wait);
                    }
                }
            } catch (InterruptedException e) {
                LOG.error("drm_sched {}: worker interrupted; it keeps running until fini", name, e);
                continue;
            } finally {
                lock.unlock();
            }
            if (toRun != null) {
                runJob(toRun);
            } else if (timedOut != null) {
                handleTimeout(timedOut);
            }
            freeAll();
        }
    }

    /** {@code drm_sched_select_entity} and {@code drm_sched_entity_pop_job}, lock held: the next job to run, taken. */
    private SchedJob selectJob() {
        for (SchedPriority p : SchedPriority.values()) {
            SchedEntity best = runQueues.get(p).selectFifo(this::isReady);
            if (best != null) {
                SchedJob job = best.queue.peekFirst();
                if (!pending.canQueue(job)) {
                    return null;
                }
                if (job.credits() > creditLimit) {
                    LOG.warn("drm_sched {}: {} asks {} credits, more than the limit {}; clamped", name, job,
                            job.credits(), creditLimit);
                }
                best.queue.removeFirst();
                best.lastScheduled = job.finished();
                pending.begin(job, System.nanoTime());
                wake.signalAll();
                return job;
            }
        }
        return null;
    }

    /** Whether every dependency of {@code job} has signalled; if not, a wake-up is registered on the first pending one. */
    private boolean isReady(SchedJob job) {
        Fence dep = job.firstPendingDependency();
        if (dep == null) {
            return true;
        }
        if (job.waitingOn != dep) {
            job.waitingOn = dep;
            if (!dep.addCallback(f -> wakeWorker())) {
                return isReady(job);
            }
        }
        return false;
    }

    private void wakeWorker() {
        lock.lock();
        try {
            wake.signalAll();
        } finally {
            lock.unlock();
        }
    }

    private void runJob(SchedJob job) {
        trace(job, "run");
        Fence hw;
        try {
            hw = runOnBackend(job);
        } finally {
            lock.lock();
            try {
                workerBusy = false;
                wake.signalAll();
            } finally {
                lock.unlock();
            }
        }
        job.scheduled().signal();
        if (hw == null) {
            done(job, job.finished().error().orElse(null));
        } else {
            lock.lock();
            try {
                job.parent = hw;
            } finally {
                lock.unlock();
            }
            watchParent(job, hw);
        }
    }

    /** {@link SchedBackend#runJob}; an error it throws ends the job with that errno, as {@code ERR_PTR} does. */
    private Fence runOnBackend(SchedJob job) {
        try {
            return backend.runJob(job);
        } catch (ErrnoException e) {
            LOG.debug("drm_sched {}: run_job of {} failed with {}", name, job, e.errno(), e);
            job.finished().setError(e.errno());
            return null;
        } catch (RuntimeException e) {
            LOG.error("drm_sched {}: run_job of {} threw; the job ends with EIO", name, job, e);
            job.finished().setError(Errno.EIO);
            return null;
        }
    }

    /** {@code drm_sched_job_done_cb} on the hardware fence. */
    private void watchParent(SchedJob job, Fence hw) {
        Consumer<Fence> cb = f -> done(job, f.error().orElse(null));
        lock.lock();
        try {
            job.parentCallback = cb;
        } finally {
            lock.unlock();
        }
        if (!hw.addCallback(cb)) {
            done(job, hw.error().orElse(null));
        }
    }

    /** {@code drm_sched_job_done}: credits back, finished fence signalled with {@code error}, job queued for freeing. */
    private void done(SchedJob job, Errno error) {
        lock.lock();
        try {
            if (!job.claim()) {
                return;
            }
            pending.releaseCredits(job);
            job.parent = null;
            job.parentCallback = null;
            completing++;
        } finally {
            lock.unlock();
        }
        boolean guilty = job.guilty;
        try {
            job.signalFences(error);
            trace(job, "done" + (guilty ? " error=ETIME (guilty)" : error == null ? "" : " error=" + error));
        } finally {
            lock.lock();
            try {
                pending.remove(job, !stopped, System.nanoTime());
                toFree.addLast(job);
                completing--;
                wake.signalAll();
            } finally {
                lock.unlock();
            }
        }
    }

    private void handleTimeout(SchedJob job) {
        trace(job, "timeout after " + Duration.ofNanos(timeoutNanos));
        TimeoutStatus status;
        try {
            status = backend.timedOutJob(job);
        } catch (RuntimeException e) {
            LOG.error("drm_sched {}: timedout_job of {} threw; treated as ENODEV", name, job, e);
            status = TimeoutStatus.ENODEV;
        }
        lock.lock();
        try {
            workerBusy = false;
            pending.disarmTimer();
            if (status != TimeoutStatus.ENODEV && !stopped) {
                pending.armTimer(System.nanoTime());
            }
            wake.signalAll();
        } finally {
            lock.unlock();
        }
    }

    private void freeAll() {
        for (;;) {
            SchedJob job;
            lock.lock();
            try {
                job = toFree.pollFirst();
            } finally {
                lock.unlock();
            }
            if (job == null) {
                return;
            }
            free(job);
        }
    }

    /** {@link SchedBackend#freeJob}; a failure is the driver's bug, logged, and the job counts as freed. */
    private void free(SchedJob job) {
        try {
            backend.freeJob(job);
        } catch (RuntimeException e) {
            LOG.error("drm_sched {}: free_job of {} threw", name, job, e);
        }
    }

    private void trace(SchedJob job, String what) {
        if (tracer != null) {
            Fence f = job.finished();
            tracer.emit(TraceKind.SCHED, name, f.seqno(), job.credits(), what + " " + job.entity() + " "
                    + f.context().timelineName() + "#" + f.seqno());
        }
    }

    @Override
    public String toString() {
        return "drm_gpu_scheduler " + name;
    }
}
