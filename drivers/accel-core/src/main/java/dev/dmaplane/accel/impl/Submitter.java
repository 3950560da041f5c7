package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.Submission;
import dev.dmaplane.accel.sched.SchedEntity;
import dev.dmaplane.accel.sched.SchedJob;
import dev.dmaplane.accel.sched.SchedPriority;
import dev.dmaplane.accel.spi.GpuJob;
import dev.dmaplane.accel.sync.DrmExec;
import dev.dmaplane.accel.sync.SyncObj;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.Fences;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.function.Supplier;

/**
 * The submission path of one context ({@code amdgpu_cs.c}, {@code xe_exec.c} on drm_sched): one
 * {@link SchedEntity} per engine, made on first use at the context's priority; the ban
 * ({@code amdgpu_ctx}'s guilty flag, xe's banned exec queue); busy time per engine for fdinfo.
 * <p>
 * <b>Order of a submission</b>, each step able to refuse with nothing changed before the job is armed: checks
 * (ban, engine, commands, the provider's {@code checkJob}); handle lookups; sync-object in-fences (a
 * WAIT_FOR_SUBMIT point waits up to 5 s with no lock held, as {@code drm_syncobj_find_fence}); then under the
 * device's {@link Ttm} lock and the monitors of the signal sync objects: their points checked, validation of
 * every object and of the VM's evicted ranges, the reservations locked with {@link DrmExec} (one fence slot
 * each), implicit and explicit dependencies, arm, the finished fence added at WRITE or READ usage, push, and the
 * finished fence installed in the signal sync objects ({@code amdgpu_cs_post_dependencies}).
 * <p>
 * <b>Lock order</b>: the Ttm lock, then the signal sync objects' monitors (by identity hash), then reservation
 * locks (Ttm before reservations is what eviction already does); no thread waits for the Ttm lock while it
 * holds a reservation lock or a sync object's monitor. Arm and push happen under the Ttm lock, so jobs of one entity are
 * pushed in the order they were armed, as {@code drm_sched_job_arm} requires.
 */
final class Submitter {
    private static final Logger LOG = LoggerFactory.getLogger(Submitter.class);

    private final ContextImpl ctx;
    private final DeviceImpl device;
    private final Ttm ttm;
    private final Tracer tracer;
    private final SchedEntity[] entities;
    private final AtomicLongArray busyNanos;
    /** A job submitted and not yet accounted: its engine and fences. */
    private record Running(int engine, Fence scheduled, Fence finished) {
    }

    /** Jobs not yet accounted for ({@link #collect}); guarded by itself. What context teardown waits for. */
    private final List<Running> running = new ArrayList<>();
    private SchedPriority priority = SchedPriority.NORMAL;
    private volatile String banned;

    Submitter(ContextImpl ctx, DeviceImpl device, Ttm ttm, Tracer tracer) {
        this.ctx = ctx;
        this.device = device;
        this.ttm = ttm;
        this.tracer = tracer;
        this.entities = new SchedEntity[device.engines().size()];
        this.busyNanos = new AtomicLongArray(entities.length);
    }

    /** {@code AMDGPU_CTX_PRIORITY_*}: KERNEL is the driver's; {@code EBUSY} once an engine was used. */
    synchronized void setPriority(SchedPriority p) {
        ErrnoException.check(p != null && p != SchedPriority.KERNEL, Errno.EINVAL, ctx + ": priority " + p
                + " is not a user priority (KERNEL is reserved for the driver)");
        for (SchedEntity e : entities) {
            ErrnoException.check(e == null, Errno.EBUSY, ctx + ": priority is fixed once a job was submitted");
        }
        priority = p;
    }

    synchronized SchedPriority priority() {
        return priority;
    }

    /** Why the context is banned, or null. */
    String banned() {
        return banned;
    }

    long busyNanos(int engine) {
        collect();
        return busyNanos.get(engine);
    }

    Fence submit(Submission s, SyncObjTable syncobjs) {
        ErrnoException.check(s != null, Errno.EINVAL, ctx + ": submission is null");
        collect();
        String ban = banned;
        if (ban != null) {
            throw new ErrnoException(Errno.ECANCELED, ctx + " is banned: " + ban);
        }
        ErrnoException.check(s.engine() >= 0 && s.engine() < entities.length, Errno.EINVAL, ctx + ": engine "
                + s.engine() + " outside 0.." + (entities.length - 1));
        ErrnoException.check(!s.commands().isEmpty(), Errno.EINVAL, ctx + ": a submission without commands");
        device.provider().checkJob(s.engine(), s.commands());
        Map<BoImpl, Boolean> objects = new LinkedHashMap<>();
        for (Submission.BoUse u : s.objects()) {
            objects.merge(ctx.lookup(u.handle()), u.write(), Boolean::logicalOr);
        }
        List<Target> signal = signalTargets(s, syncobjs);
        List<Fence> dependencies = new ArrayList<>(s.inFences());
        for (Submission.SyncPoint w : s.waits()) {
            dependencies.add(syncobjs.lookup(w.handle()).findFence(w.point(), w.flags(), SyncObjTable.SUBMIT_TIMEOUT));
        }
        GpuJob payload = new GpuJob(ctx.toString(), s.engine(), ctx.vm().ops, s.commands());
        List<SyncObj> monitors = new ArrayList<>(signal.stream().map(Target::obj).toList());
        monitors.sort(Comparator.comparingInt(System::identityHashCode));
        Set<BoImpl> remapped = ctx.binds().remapInvalidatedImports();
        ttm.lock.lock();
        try {
            return holding(monitors, 0, () -> armAndPush(s.engine(), payload, objects, dependencies, signal, remapped));
        } finally {
            ttm.lock.unlock();
        }
    }

    /**
     * Runs {@code body} holding the monitors of {@code objs} from {@code i} on, in the given order: no other
     * thread adds a point to a signal sync object between the check of its last point and the install.
     */
    private static <T> T holding(List<SyncObj> objs, int i, Supplier<T> body) {
        if (i == objs.size()) {
            return body.get();
        }
        synchronized (objs.get(i)) {
            return holding(objs, i + 1, body);
        }
    }

    /** The locked part of a submission, Ttm lock and signal sync objects held: everything up to the push. */
    private Fence armAndPush(int engine, GpuJob payload, Map<BoImpl, Boolean> objects,
                             List<Fence> dependencies, List<Target> signal, Set<BoImpl> remapped) {
        ttm.reap();
        for (BoImpl bo : objects.keySet()) {
            ErrnoException.check(bo.handleOpen, Errno.ENOENT, bo.name + " was closed during the submission");
        }
        for (Target t : signal) {
            long last = t.obj().query(SyncObj.QUERY_LAST_SUBMITTED);
            ErrnoException.check(t.point() == 0 || Long.compareUnsigned(t.point(), last) > 0, Errno.EINVAL, ctx
                    + ": point " + Long.toUnsignedString(t.point()) + " of sync object " + t.handle()
                    + " is not after its last point " + last);
        }
        for (BoImpl bo : objects.keySet()) {
            ctx.binds().validateLocked(bo, false); // the VM's invalidated imports are rewritten by validateVmLocked
        }
        ctx.binds().validateVmLocked(remapped);
        SchedJob job = SchedJob.init(entity(engine), 1, payload);
        for (Fence f : dependencies) {
            job.addDependency(f);
        }
        Fence done;
        try (DrmExec exec = new DrmExec(0)) {
            exec.untilAllLocked(e -> objects.keySet().forEach(bo -> e.prepareObj(bo.resv, 1)));
            objects.forEach((bo, write) -> job.addImplicitDependencies(bo.resv, write));
            job.arm();
            done = job.finished();
            objects.forEach((bo, write) -> bo.resv.addFence(done, write ? ResvUsage.WRITE : ResvUsage.READ));
        }
        watch(new Running(engine, job.scheduled(), done));
        job.push();
        for (Target t : signal) {
            if (t.point() == 0) {
                t.obj().replaceFence(done);
            } else {
                t.obj().addPoint(done, t.point());
            }
        }
        return done;
    }

    /** A sync object to signal with the job's finished fence at {@code point}. */
    private record Target(SyncObj obj, int handle, long point) {
    }

    /**
     * The signal sync objects, each once and without flags; their points are checked under their monitors
     * before the job is armed: a timeline point must come after the last one submitted
     * ({@code drm_syncobj_add_point} would accept and warn; refusing keeps the timeline ordered and the
     * submission whole).
     */
    private List<Target> signalTargets(Submission s, SyncObjTable syncobjs) {
        List<Target> out = new ArrayList<>();
        Map<SyncObj, Boolean> seen = new IdentityHashMap<>();
        for (Submission.SyncPoint p : s.signals()) {
            SyncObj obj = syncobjs.lookup(p.handle());
            ErrnoException.check(p.flags() == 0, Errno.EINVAL, ctx + ": signal of sync object " + p.handle()
                    + " with flags 0x" + Integer.toHexString(p.flags()));
            ErrnoException.check(seen.put(obj, true) == null, Errno.EINVAL, ctx + ": sync object " + p.handle()
                    + " signalled twice by one submission");
            out.add(new Target(obj, p.handle(), p.point()));
        }
        return out;
    }

    /** The context's entity on {@code engine}, made when its first job is about to be armed. */
    private synchronized SchedEntity entity(int engine) {
        if (entities[engine] == null) {
            entities[engine] = SchedEntity.create(device.provider().scheduler(engine), priority);
        }
        return entities[engine];
    }

    /**
     * Keeps the job until {@link #collect} accounts for it, which its finished fence's callback does; a caller
     * that saw the fence signal and calls in before that callback ran gets it accounted by its own collect.
     */
    private void watch(Running r) {
        synchronized (running) {
            running.add(r);
        }
        if (!r.finished().addCallback(f -> collect())) {
            collect();
        }
    }

    /**
     * For every job whose finished fence signalled: the ban on a fault or a hang, decided while the job is taken off
     * the list (so a caller whose collect found the list already emptied by another thread's still sees the ban),
     * then busy time from scheduled to finished.
     */
    private void collect() {
        List<Running> done = new ArrayList<>();
        synchronized (running) {
            for (var it = running.iterator(); it.hasNext(); ) {
                Running r = it.next();
                if (r.finished().isSignaled()) {
                    it.remove();
                    done.add(r);
                    r.finished().error().filter(e -> e == Errno.EFAULT || e == Errno.ETIME)
                            .ifPresent(e -> ban(r.finished(), e));
                }
            }
        }
        for (Running r : done) {
            long start = r.scheduled().timestampNanos().orElse(0);
            long end = r.finished().timestampNanos().orElse(start);
            if (start > 0 && end > start) {
                busyNanos.addAndGet(r.engine(), end - start);
            }
        }
    }

    /**
     * The context is guilty: a GPU page fault ({@code EFAULT}, xe bans the exec queue) or a hung job
     * ({@code ETIME}, amdgpu marks the context guilty); later submissions are {@code ECANCELED}.
     */
    private synchronized void ban(Fence f, Errno e) {
        if (banned == null) {
            banned = f + " ended with " + e;
            LOG.warn("{}: banned, {} ended with {}", ctx, f, e);
            tracer.emit(TraceKind.FAULT, device.name(), -1, 0, ctx + " banned: " + f + " ended with " + e);
        }
    }

    /**
     * Context teardown ({@code drm_sched_entity_destroy} of every entity as for a killed process): the queued
     * jobs are cancelled with {@code ECANCELED}, then it waits (bounded) for every job of the context to finish,
     * so the VM outlives the jobs that use it.
     */
    void teardown() {
        List<SchedEntity> all = new ArrayList<>();
        synchronized (this) {
            for (SchedEntity e : entities) {
                if (e != null) {
                    all.add(e);
                }
            }
        }
        all.forEach(SchedEntity::kill);
        List<Fence> pending;
        synchronized (running) {
            pending = running.stream().map(Running::finished).toList();
        }
        if (!Fences.awaitAll(pending, ttm.timeout())) {
            LOG.error("{}: job(s) still on the hardware after {}; the VM goes all the same: {}", ctx, ttm.timeout(),
                    pending.stream().filter(f -> !f.isSignaled()).toList());
        }
        collect();
    }
}
