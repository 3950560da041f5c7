package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.time.Duration;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The options of {@code nvme perf} after spdk_nvme_perf ({@code app/spdk_nvme_perf/perf.c}): {@code -q} queue depth
 * per worker, {@code -o} I/O size in bytes, {@code -w} pattern, {@code -M} read percentage of a mixed pattern,
 * {@code -t} run time, {@code -a} warm-up time, {@code -c} the workers' cores (one queue pair each), {@code --irq} MSI-X completion instead
 * of polling, {@code --iommufd} the iommufd front end instead of the container/group one.
 *
 * @param queueDepth  outstanding I/Os per worker, 1..1023
 * @param ioSize      bytes per I/O, a positive multiple of the block size (checked against the namespace at run time)
 * @param workload    the pattern
 * @param rwMixRead   percentage of reads for {@link Workload#mixed()} patterns, 0..100; -1 for the others
 * @param time        how long the workers submit and are measured
 * @param warmup      how long they run the workload before that, unmeasured ({@code -a})
 * @param cores       the core number of each worker, in order (labels: Java threads are not pinned)
 * @param irq         completions by MSI-X through VFIO eventfds instead of polling
 * @param bdf         the NVMe function
 * @param iommufd     open it through iommufd ({@code /dev/iommu} and the device cdev) instead of a VFIO container
 */
public record PerfOptions(int queueDepth, int ioSize, Workload workload, int rwMixRead, Duration time,
                          Duration warmup, List<Integer> cores, boolean irq, String bdf, boolean iommufd) {
    /** The default machine's NVMe. */
    public static final String DEFAULT_BDF = "0000:06:00.0";
    /** The deepest queue a worker may ask for: the controller's largest queue less the slot kept empty. */
    public static final int MAX_QUEUE_DEPTH = 1023;

    public PerfOptions {
        ErrnoException.requireNonNull(workload, "nvme perf: -w");
        ErrnoException.requireNonNull(time, "nvme perf: -t");
        ErrnoException.requireNonNull(warmup, "nvme perf: -a");
        ErrnoException.requireNonNull(cores, "nvme perf: -c");
        ErrnoException.requireNonNull(bdf, "nvme perf: -r");
        cores = List.copyOf(cores);
        if (queueDepth < 1 || queueDepth > MAX_QUEUE_DEPTH) {
            throw new ErrnoException(Errno.EINVAL, "-q " + queueDepth + ": queue depth outside 1.." + MAX_QUEUE_DEPTH);
        }
        if (ioSize < 512 || ioSize % 512 != 0) {
            throw new ErrnoException(Errno.EINVAL, "-o " + ioSize + ": I/O size must be a positive multiple of 512");
        }
        if (workload.mixed() && (rwMixRead < 0 || rwMixRead > 100)) {
            throw new ErrnoException(Errno.EINVAL, "-w " + workload.option() + " needs -M with a read percentage in"
                    + " 0..100" + (rwMixRead == -1 ? "" : ", not " + rwMixRead));
        }
        if (!workload.mixed() && rwMixRead != -1) {
            throw new ErrnoException(Errno.EINVAL, "-M " + rwMixRead + " applies only to -w rw and randrw, not "
                    + workload.option());
        }
        if (time.isNegative() || time.isZero()) {
            throw new ErrnoException(Errno.EINVAL, "-t " + time.toSeconds() + ": the run time must be positive");
        }
        if (warmup.isNegative()) {
            throw new ErrnoException(Errno.EINVAL, "-a " + warmup.toSeconds() + ": the warm-up time cannot be negative");
        }
        if (cores.isEmpty() || cores.size() > 64) {
            throw new ErrnoException(Errno.EINVAL, "-c: " + cores.size() + " workers, 1..64 allowed");
        }
    }

    /** One worker on core 0, polled, on the default machine's NVMe; half reads for the mixed patterns. */
    public static PerfOptions of(int queueDepth, int ioSize, Workload workload, Duration time) {
        ErrnoException.requireNonNull(workload, "nvme perf: -w");
        return new PerfOptions(queueDepth, ioSize, workload, workload.mixed() ? 50 : -1, time, Duration.ZERO, List.of(0), false,
                DEFAULT_BDF, false);
    }

    /** The same with read percentage {@code m}. */
    public PerfOptions withRwMixRead(int m) {
        return new PerfOptions(queueDepth, ioSize, workload, m, time, warmup, cores, irq, bdf, iommufd);
    }

    /** The same with {@code n} workers on cores 0..n-1. */
    public PerfOptions withWorkers(int n) {
        return new PerfOptions(queueDepth, ioSize, workload, rwMixRead, time, warmup,
                IntStream.range(0, n).boxed().toList(), irq, bdf, iommufd);
    }

    /** The same with {@code w} of unmeasured warm-up. */
    public PerfOptions withWarmup(Duration w) {
        return new PerfOptions(queueDepth, ioSize, workload, rwMixRead, time, w, cores, irq, bdf, iommufd);
    }

    /** The same with MSI-X completion. */
    public PerfOptions withIrq(boolean on) {
        return new PerfOptions(queueDepth, ioSize, workload, rwMixRead, time, warmup, cores, on, bdf, iommufd);
    }

    /** The same through iommufd ({@code true}) or a VFIO container. */
    public PerfOptions withIommufd(boolean on) {
        return new PerfOptions(queueDepth, ioSize, workload, rwMixRead, time, warmup, cores, irq, bdf, on);
    }

    /**
     * The cores of {@code -c}: a hexadecimal mask with {@code 0x} (each set bit a worker on that core), or a plain
     * number of workers (cores 0..n-1).
     *
     * @throws ErrnoException {@code EINVAL} naming the word
     */
    public static List<Integer> parseCores(String word) {
        ErrnoException.requireNonNull(word, "-c");
        try {
            if (word.startsWith("0x") || word.startsWith("0X")) {
                long mask = Long.parseUnsignedLong(word.substring(2), 16);
                if (mask == 0) {
                    throw new ErrnoException(Errno.EINVAL, "-c " + word + ": the core mask selects no core");
                }
                return IntStream.range(0, 64).filter(i -> (mask >>> i & 1) != 0).boxed().toList();
            }
            int n = Integer.parseInt(word);
            if (n < 1 || n > 64) {
                throw new ErrnoException(Errno.EINVAL, "-c " + word + ": 1..64 workers, or a core mask such as 0x3");
            }
            return IntStream.range(0, n).boxed().toList();
        } catch (NumberFormatException e) {
            throw new ErrnoException(Errno.EINVAL, "-c " + word + ": neither a core mask (0x3) nor a number of workers", e);
        }
    }
}
