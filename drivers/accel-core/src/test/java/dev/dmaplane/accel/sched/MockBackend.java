package dev.dmaplane.accel.sched;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A mock ring, as {@code drivers/gpu/drm/scheduler/tests/mock_scheduler.c}: {@code runJob} puts the job on the ring
 * with a hardware fence that the test completes ({@link #completeNext}), or signals it at once when
 * {@code completeOnRun}; a job whose payload is {@link #HANG} never completes. A timeout resets the ring the way a
 * driver does: stop, drop the ring, optionally resubmit, start.
 */
final class MockBackend implements SchedBackend {
    static final Object HANG = "hang";
    /** A payload that makes {@code runJob} fail with {@code EFAULT}, as a driver refusing a job does. */
    static final Object REFUSE = "refuse";

    private final FenceContext hwContext = FenceContext.allocate("mock", "ring");
    private final boolean completeOnRun;
    private final ArrayDeque<Running> ring = new ArrayDeque<>();
    final List<SchedJob> runOrder = Collections.synchronizedList(new ArrayList<>());
    final Set<SchedJob> freed = ConcurrentHashMap.newKeySet();
    final AtomicInteger resets = new AtomicInteger();
    final AtomicInteger cancels = new AtomicInteger();
    /** One permit per job freed, for bounded waits on {@code free_job}. */
    final Semaphore freePermits = new Semaphore(0);
    /** Whether a reset resubmits the innocent jobs (which then complete as they run again). */
    volatile boolean resubmitOnReset;
    private volatile boolean resubmitting;
    volatile Scheduler scheduler;

    private record Running(SchedJob job, Fence hw) {
    }

    MockBackend(boolean completeOnRun) {
        this.completeOnRun = completeOnRun;
    }

    @Override
    public Fence runJob(SchedJob job) {
        if (job.payload() == REFUSE) {
            throw new ErrnoException(Errno.EFAULT, "mock ring refuses " + job);
        }
        runOrder.add(job);
        Fence hw = hwContext.createFence();
        if ((completeOnRun || resubmitting) && job.payload() != HANG) {
            hw.signal();
        } else {
            synchronized (ring) {
                ring.addLast(new Running(job, hw));
            }
        }
        return hw;
    }

    /** Completes the oldest job on the ring that does not hang; false if there is none. */
    boolean completeNext() {
        Running r;
        synchronized (ring) {
            r = ring.stream().filter(x -> x.job().payload() != HANG).findFirst().orElse(null);
            if (r == null) {
                return false;
            }
            ring.remove(r);
        }
        r.hw().signal();
        return true;
    }

    int onRing() {
        synchronized (ring) {
            return ring.size();
        }
    }

    @Override
    public TimeoutStatus timedOutJob(SchedJob job) {
        scheduler.stop(job);
        List<Running> lost;
        synchronized (ring) {
            lost = new ArrayList<>(ring);
            ring.clear();
        }
        for (Running r : lost) {
            r.hw().setError(Errno.ECANCELED);
            r.hw().signal();
        }
        resets.incrementAndGet();
        if (resubmitOnReset) {
            resubmitting = true;
            scheduler.resubmitJobs();
            resubmitting = false;
        }
        scheduler.start();
        return TimeoutStatus.RESET;
    }

    @Override
    public void cancelJob(SchedJob job) {
        cancels.incrementAndGet();
    }

    @Override
    public void freeJob(SchedJob job) {
        freed.add(job);
        freePermits.release();
    }
}
