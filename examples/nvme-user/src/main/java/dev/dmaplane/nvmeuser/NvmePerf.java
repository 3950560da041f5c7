package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.vfio.VfioUapi;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;

/**
 * {@code nvme perf}: spdk_nvme_perf ({@code app/spdk_nvme_perf/perf.c}) over {@link NvmeController}. Attaches the
 * controller through VFIO, gives each worker a queue pair of {@code queueDepth + 1} entries and buffers in pinned
 * memory, runs the workers together for the run time, and detaches: nothing stays pinned, mapped or bound.
 */
public final class NvmePerf {
    private static final Logger LOG = LoggerFactory.getLogger(NvmePerf.class);
    /** How long after the run time the workers may take to drain and stop. */
    static final long JOIN_SLACK_MS = 30_000;

    private NvmePerf() {
    }

    /**
     * Runs {@code options} on {@code machine}'s NVMe; with {@code direct}, then the same number of copies of
     * {@code ioSize} blocks done directly ({@link MemorySegment#copy}) from memory the namespace's size, on one thread,
     * for the same time.
     *
     * @throws ErrnoException {@code EINVAL} for options the namespace cannot take; {@code EIO} for a failed I/O or a
     *                        data check; the driver's errnos
     */
    public static PerfResult run(Machine machine, PerfOptions options, boolean direct) {
        ErrnoException.requireNonNull(machine, "nvme perf: machine");
        ErrnoException.requireNonNull(options, "nvme perf: options");
        int workers = options.cores().size();
        NvmeController.Options attach = NvmeController.Options.DEFAULT.withIrqVectors(options.irq() ? workers + 1 : 0)
                .withIommufd(options.iommufd());
        List<WorkerResult> rows = new ArrayList<>();
        NvmeIdentity identity;
        int deviceId;
        try (NvmeController ctrl = NvmeController.attach(machine, options.bdf(), attach)) {
            identity = ctrl.identity();
            if (workers > identity.ioQueues()) {
                throw new ErrnoException(Errno.EINVAL, "-c: " + workers + " workers, the controller grants "
                        + identity.ioQueues() + " I/O queue pairs");
            }
            if (options.ioSize() > identity.maxTransfer()) {
                throw new ErrnoException(Errno.EINVAL, "-o " + options.ioSize() + ": over the controller's "
                        + identity.maxTransfer() + "-byte MDTS");
            }
            if (options.queueDepth() + 1 > identity.maxEntries()) {
                throw new ErrnoException(Errno.EINVAL, "-q " + options.queueDepth() + ": the controller's queues hold "
                        + (identity.maxEntries() - 1) + " commands");
            }
            deviceId = (int) ctrl.frontEnd().device().read(VfioUapi.VFIO_PCI_CONFIG_REGION_INDEX, 2, 2);
            rows.addAll(runWorkers(ctrl, options));
        }
        Optional<WorkerResult> copies = direct ? Optional.of(directCopies(identity, options)) : Optional.empty();
        return new PerfResult(identity, deviceId, options, rows, copies);
    }

    private static List<WorkerResult> runWorkers(NvmeController ctrl, PerfOptions options) {
        int n = options.cores().size();
        CountDownLatch start = new CountDownLatch(1);
        List<PerfWorker> ws = new ArrayList<>();
        List<QueuePair> qps = new ArrayList<>();
        List<Thread> threads = new ArrayList<>();
        try {
            for (int i = 0; i < n; i++) {
                QueuePair qp = ctrl.createIoQueuePair(options.queueDepth() + 1, options.ioSize(), options.irq());
                qps.add(qp);
                ws.add(new PerfWorker(options.cores().get(i), i, n, ctrl, qp, options, start));
            }
            for (PerfWorker w : ws) {
                threads.add(Thread.ofPlatform().name("nvme-perf core " + threads.size()).start(w));
            }
            start.countDown();
            long deadline = System.nanoTime() + options.warmup().toNanos() + options.time().toNanos()
                    + Duration.ofMillis(JOIN_SLACK_MS).toNanos();
            for (Thread t : threads) {
                long left = deadline - System.nanoTime();
                if (left <= 0 || !t.join(Duration.ofNanos(left))) {
                    throw new ErrnoException(Errno.ETIMEDOUT, "nvme perf: " + t.getName() + " did not stop "
                            + JOIN_SLACK_MS + " ms after the run time");
                }
            }
            List<WorkerResult> rows = new ArrayList<>();
            for (PerfWorker w : ws) {
                if (w.failure() != null) {
                    throw w.failure();
                }
                rows.add(w.result());
            }
            return rows;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ErrnoException(Errno.EINTR, "nvme perf: interrupted waiting for the workers", e);
        } finally {
            start.countDown();
            for (Thread t : threads) {
                if (t.isAlive()) {
                    t.interrupt();
                    joinQuietly(t);
                }
            }
            for (PerfWorker w : ws) {
                w.close();
            }
            for (QueuePair qp : qps) {
                qp.close();
            }
        }
    }

    private static void joinQuietly(Thread t) {
        try {
            if (!t.join(Duration.ofMillis(PerfWorker.DRAIN_TIMEOUT_MS))) {
                LOG.error("nvme perf: {} still running after an interrupt", t.getName());
            }
        } catch (InterruptedException e) {
            LOG.error("nvme perf: interrupted stopping {}", t.getName(), e);
            Thread.currentThread().interrupt();
        }
    }

    /** One copy of the baseline: a read copies from the namespace's memory, a write into it. */
    private static void copy(PerfOptions options, MemorySegment ns, MemorySegment buf, SplittableRandom rnd,
                             long[] next, long slots) {
        int io = (int) buf.byteSize();
        long at = (options.workload().random() ? rnd.nextLong(slots) : next[0]++ % slots) * io;
        boolean read = !options.workload().mixed() ? options.workload().reads : rnd.nextInt(100) < options.rwMixRead();
        if (read) {
            MemorySegment.copy(ns, at, buf, 0, io);
        } else {
            MemorySegment.copy(buf, 0, ns, at, io);
        }
    }

    /**
     * The baseline: the run's pattern of {@code ioSize} copies from memory the size of the namespace into a buffer,
     * with {@link MemorySegment#copy}, for the warm-up and then the run time, timed per copy as the driver's I/Os are.
     */
    static WorkerResult directCopies(NvmeIdentity identity, PerfOptions options) {
        long size = identity.namespaceBytes();
        int io = options.ioSize();
        long slots = size / io;
        SplittableRandom rnd = new SplittableRandom(0x5eed_0000L);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ns = arena.allocate(size, DmaRegion.PAGE);
            MemorySegment buf = arena.allocate(io, DmaRegion.PAGE);
            long ios = 0;
            long lat = 0;
            long min = Long.MAX_VALUE;
            long max = 0;
            long[] next = {0};
            long warmEnd = System.nanoTime() + options.warmup().toNanos();
            while (System.nanoTime() < warmEnd) {
                copy(options, ns, buf, rnd, next, slots);
            }
            long t0 = System.nanoTime();
            long end = t0 + options.time().toNanos();
            long now = t0;
            while (now < end) {
                copy(options, ns, buf, rnd, next, slots);
                long t = System.nanoTime();
                long l = t - now;
                lat += l;
                min = Math.min(min, l);
                max = Math.max(max, l);
                ios++;
                now = t;
            }
            return new WorkerResult(options.cores().getFirst(), ios, ios * io, now - t0, lat, ios == 0 ? 0 : min, max,
                    0, 0, 0);
        }
    }
}
