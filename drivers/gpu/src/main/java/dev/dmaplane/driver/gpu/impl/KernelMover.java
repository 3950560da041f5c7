package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.accel.sched.SchedEntity;
import dev.dmaplane.accel.sched.SchedJob;
import dev.dmaplane.accel.sched.SchedPriority;
import dev.dmaplane.accel.sched.Scheduler;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.Fences;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.List;

/**
 * The driver's own buffer moves and clears in the kernel VM (slot 0, physical addresses) on a copy engine, at
 * {@link SchedPriority#KERNEL}: what amdgpu's {@code amdgpu_ttm_copy_mem_to_mem} and {@code amdgpu_fill_buffer}
 * submit on the buffer-functions entity ({@code adev->mman.high_pr}). Each call is a job (several when its
 * descriptors outnumber the ring) and returns the fence that signals when it is done.
 * More descriptors than the ring holds are split into several jobs.
 */
final class KernelMover {
    private final SchedEntity entity;
    private static final Logger LOG = LoggerFactory.getLogger(KernelMover.class);

    private final int maxCommands;
    /** The finished fence of the last job queued. */
    private Fence last;

    KernelMover(Scheduler copyEngine) {
        this.entity = SchedEntity.create(copyEngine, SchedPriority.KERNEL);
        this.maxCommands = copyEngine.creditLimit();
    }

    /**
     * Copies the bytes of {@code from} into {@code to}, both lists of aperture-tagged runs of the same total length,
     * one copy descriptor per piece where both sides are contiguous, run once every fence of {@code dependencies}
     * signalled (drm_sched waits, the caller does not). {@code EINVAL} for empty lists or different totals.
     */
    Fence move(List<GpuRun> from, List<GpuRun> to, List<Fence> dependencies) {
        ErrnoException.check(from != null && !from.isEmpty() && to != null && !to.isEmpty(), Errno.EINVAL,
                "move: source and destination runs are required");
        long total = from.stream().mapToLong(GpuRun::length).sum();
        long totalTo = to.stream().mapToLong(GpuRun::length).sum();
        ErrnoException.check(total == totalTo, Errno.EINVAL, "move: source " + total + " bytes, destination "
                + totalTo + " bytes");
        List<GpuCommand> copies = new ArrayList<>();
        int i = 0;
        int j = 0;
        long offI = 0;
        long offJ = 0;
        while (i < from.size()) {
            GpuRun s = from.get(i);
            GpuRun d = to.get(j);
            long n = Math.min(s.length() - offI, d.length() - offJ);
            copies.add(new GpuCommand.Copy(0, s.gpuAddress() + offI, d.gpuAddress() + offJ, n));
            offI += n;
            offJ += n;
            if (offI == s.length()) {
                i++;
                offI = 0;
            }
            if (offJ == d.length()) {
                j++;
                offJ = 0;
            }
        }
        return submit("move", copies, dependencies);
    }

    /** Zeroes every run of {@code runs}, one fill descriptor each; nothing to zero is {@link #barrier()}. */
    Fence clear(List<GpuRun> runs) {
        ErrnoException.check(runs != null, Errno.EINVAL, "clear: runs are null");
        if (runs.isEmpty()) {
            return barrier();
        }
        return submit("clear", runs.stream().<GpuCommand>map(r -> new GpuCommand.Fill(0, r.gpuAddress(), r.length(), 0))
                .toList(), List.of());
    }

    /**
     * One job per ring's worth of descriptors, in order on the entity, each after {@code dependencies}; one job's
     * finished fence, or a container of all of them carrying the first error ({@code dma_fence_array}).
     */
    private Fence submit(String what, List<GpuCommand> commands, List<Fence> dependencies) {
        List<Fence> finished = new ArrayList<>();
        synchronized (this) {
            for (int from = 0; from < commands.size(); from += maxCommands) {
                List<GpuCommand> part = commands.subList(from, Math.min(commands.size(), from + maxCommands));
                SchedJob job = SchedJob.init(entity, part.size(), new GpuJob(part, fault -> { }));
                dependencies.forEach(job::addDependency);
                job.arm();
                job.push();
                finished.add(job.finished());
            }
            last = finished.getLast();
        }
        LOG.trace("{}: {} descriptors in {} job(s)", what, commands.size(), finished.size());
        return finished.size() == 1 ? finished.getFirst() : Fences.all(finished);
    }

    /** A fence that signals once every move and clear queued so far has finished: the entity's jobs end in order. */
    synchronized Fence barrier() {
        return last != null ? last : Fences.all(List.of());
    }
}
