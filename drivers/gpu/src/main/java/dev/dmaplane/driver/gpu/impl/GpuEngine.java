package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.accel.sched.SchedBackend;
import dev.dmaplane.accel.sched.SchedJob;
import dev.dmaplane.accel.sched.Scheduler;
import dev.dmaplane.accel.sched.SchedulerConfig;
import dev.dmaplane.accel.sched.TimeoutStatus;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.irq.IrqReturn;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.trace.Tracer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * One GPU engine under drm_sched: its {@link Ring}, its {@link Scheduler} with this class as the
 * {@code drm_sched_backend_ops} ({@code amdgpu_job.c}: {@code amdgpu_job_run}, {@code amdgpu_job_timedout},
 * {@code amdgpu_job_free_cb}) and its threaded interrupt handler ({@code amdgpu_fence_process}).
 * <p>
 * Recovery: a hang is found by the scheduler's timeout; a fault by the interrupt, which ends the faulting job's
 * hardware fence with the fault's errno and calls {@code drm_sched_fault}, so the timeout handler runs at once. Both
 * recover on the scheduler's worker, as {@code sched_main.c} documents for a reset: {@code stop} (the hung job
 * guilty, so {@code ETIME}; a faulting job is already done), engine reset, the fences of jobs that finished before
 * it signalled, the others' fences ended with {@code ECANCELED}, {@code resubmitJobs} (the ring lost them, so
 * they run again, on new hardware fences), {@code start}. A job that finished before the reset is not run again:
 * its signalled fence is handed back.
 */
final class GpuEngine implements SchedBackend {
    private static final Logger LOG = LoggerFactory.getLogger(GpuEngine.class);

    final int index;
    private final IrqVectors irqs;
    private final Ring ring;
    private final Scheduler scheduler;
    /** The last hardware fence of each job not yet freed. */
    private final Map<SchedJob, Fence> hardwareFences = new ConcurrentHashMap<>();
    /** {@code drm_sched_fault} calls not yet seen by {@link #timedOutJob}: a fault, not a timeout, woke it. */
    private final AtomicInteger faultKicks = new AtomicInteger();

    /**
     * Allocates the ring, requests the engine's vector (vector {@code index}), enables the engine and starts its
     * scheduler; on failure everything taken is released.
     */
    GpuEngine(PciFunction fn, Bar.Mmio regs, IrqVectors irqs, int index, int ringEntries, Duration timeout,
              Tracer tracer) {
        this.index = index;
        this.irqs = irqs;
        this.ring = new Ring(fn, regs, index, ringEntries, tracer);
        try {
            irqs.request(index, null, v -> onInterrupt(), "gpu-" + ENGINE_NAMES[index]);
            try {
                ring.start(index);
                this.scheduler = Scheduler.create(new SchedulerConfig(ring.name(), ringEntries, timeout), this,
                        tracer);
            } catch (RuntimeException e) {
                ring.reset(false);
                irqs.free(index);
                throw e;
            }
        } catch (RuntimeException e) {
            ring.free(fn);
            throw e;
        }
    }

    Scheduler scheduler() {
        return scheduler;
    }

    String name() {
        return ring.name();
    }

    Ring ring() {
        return ring;
    }


    boolean copyClass() {
        return index != ENGINE_COMPUTE;
    }

    /**
     * The threaded handler: signals finished fences in order; on a halt ends the faulting job and asks for recovery.
     * Package-private so that a test can run it on its own thread, as a late handler does.
     */
    IrqReturn onInterrupt() {
        Ring.Reaped r = ring.reap();
        signal(r.done(), null);
        if (r.fault() != null) {
            LOG.debug("{}: {}", ring.name(), r.fault());
            if (r.faulted() != null) {
                reportFault(r.faulted(), r.fault());
            }
            kick();
        }
        return IrqReturn.HANDLED;
    }

    private void reportFault(Ring.Inflight job, HwFault fault) {
        try {
            job.job().onFault().accept(fault);
        } catch (RuntimeException e) {
            LOG.error("{}: fault listener of a job failed on {}", ring.name(), fault, e);
        }
        job.fence().setError(fault.errno());
        job.fence().signal();
    }

    private static void signal(List<Ring.Inflight> jobs, Errno error) {
        for (Ring.Inflight j : jobs) {
            if (!j.fence().isSignaled()) {
                if (error != null) {
                    j.fence().setError(error);
                }
                j.fence().signal();
            }
        }
    }

    /** {@code run_job}: the job's descriptors into the ring; its hardware fence. */
    @Override
    public Fence runJob(SchedJob job) {
        GpuJob gpu = switch (job.payload()) {
            case GpuJob own -> own;
            case dev.dmaplane.accel.spi.GpuJob core -> GpuAccelProvider.hardwareJob(core); // a user's job from the core
            default -> throw new ErrnoException(Errno.EINVAL, ring.name() + ": job payload " + job.payload()
                    + " is not a GPU job");
        };
        ErrnoException.check(gpu.copyClass() == copyClass(), Errno.EINVAL, ring.name() + " cannot run " + gpu);
        Fence before = hardwareFences.get(job);
        if (before != null && before.isSignaled() && before.error().isEmpty()) {
            return before; // finished just before a reset: resubmitted, not run again
        }
        if (ring.faulted() && ring.idle()) {
            finishReset(ring.reset(true), null); // the faulting job was the last one: nothing to recover
        }
        Fence hw = ring.emit(gpu);
        hardwareFences.put(job, hw);
        if (ring.faulted()) {
            kick(); // queued behind a halt: recover now rather than after the timeout
        }
        return hw;
    }

    private void kick() {
        faultKicks.incrementAndGet();
        scheduler.fault();
    }

    /**
     * {@code timedout_job}: a hang (the job guilty) or a fault the interrupt reported; the engine reset either way.
     * Woken by a fault that {@link #runJob} already recovered (the faulting job was the last one), the job is not
     * hung: {@code NO_HANG}, its timer runs anew.
     */
    @Override
    public TimeoutStatus timedOutJob(SchedJob job) {
        boolean kicked = faultKicks.getAndSet(0) > 0;
        boolean hang = !ring.faulted();
        if (hang && kicked) {
            return TimeoutStatus.NO_HANG; // the fault was recovered by run_job already; the timer runs again
        }
        LOG.warn("{}: {} {}; resetting the engine", ring.name(), job, hang ? "timed out" : "behind a fault");
        scheduler.stop(hang ? job : null);
        finishReset(ring.reset(true), hang ? hardwareFences.get(job) : null);
        scheduler.resubmitJobs();
        scheduler.start();
        return TimeoutStatus.RESET;
    }

    private static void finishReset(Ring.Reset r, Fence guilty) {
        signal(r.done(), null);
        for (Ring.Inflight lost : r.lost()) {
            signal(List.of(lost), lost.fence() == guilty ? Errno.ETIME : Errno.ECANCELED);
        }
    }

    /** {@code cancel_job} from {@code drm_sched_fini}: the engine is stopped once, every fence on it ends ECANCELED. */
    @Override
    public void cancelJob(SchedJob job) {
        finishReset(ring.reset(false), null);
    }

    @Override
    public void freeJob(SchedJob job) {
        hardwareFences.remove(job);
    }

    /**
     * Teardown ({@code amdgpu_fence_driver_hw_fini}, {@code drm_sched_fini}): the scheduler finished (queued jobs
     * and jobs on the hardware ECANCELED), the engine disabled, every fence left signalled, the vector freed, the
     * ring freed.
     */
    void shutdown(PciFunction fn) {
        try {
            scheduler.fini();
        } finally {
            finishReset(ring.reset(false), null);
            irqs.free(index);
            finishReset(ring.reset(false), null); // anything the handler left before it stopped
            ring.free(fn);
        }
    }
}
