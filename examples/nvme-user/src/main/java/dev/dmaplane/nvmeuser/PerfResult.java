package dev.dmaplane.nvmeuser;

import java.util.List;
import java.util.Locale;
import java.util.Optional;

/**
 * What a {@code nvme perf} run measured, and its report in spdk_nvme_perf's layout ({@code print_performance} in
 * {@code app/spdk_nvme_perf/perf.c}): one row per worker, "Device Information : IOPS MiB/s Average min max" with the
 * latencies in microseconds, and a Total row.
 *
 * @param identity the controller
 * @param device   the PCI Device ID
 * @param options  the run's options
 * @param workers  a row per worker
 * @param direct   the same copies done directly from memory the namespace's size, when asked for
 */
public record PerfResult(NvmeIdentity identity, int device, PerfOptions options, List<WorkerResult> workers,
                         Optional<WorkerResult> direct) {
    public PerfResult {
        workers = List.copyOf(workers);
    }

    /** The workers summed over the longest worker's run time; the average weighted by I/Os, min and max over all. */
    public WorkerResult total() {
        long ios = 0;
        long bytes = 0;
        long lat = 0;
        long min = Long.MAX_VALUE;
        long max = 0;
        long elapsed = 0;
        long reads = 0;
        long writes = 0;
        long verified = 0;
        for (WorkerResult w : workers) {
            ios += w.ios();
            bytes += w.bytes();
            lat += w.totalLatNs();
            if (w.ios() > 0) {
                min = Math.min(min, w.minLatNs());
            }
            max = Math.max(max, w.maxLatNs());
            elapsed = Math.max(elapsed, w.elapsedNs());
            reads += w.reads();
            writes += w.writes();
            verified += w.verified();
        }
        return new WorkerResult(-1, ios, bytes, elapsed, lat, ios == 0 ? 0 : min, max, reads, writes, verified);
    }

    private String deviceLabel() {
        return String.format(Locale.ROOT, "PCIE (%s) NSID %d", identity.bdf(), NvmeController.NSID);
    }

    /** The report, as spdk_nvme_perf prints it, then the completion mode and the data checks. */
    public String report() {
        String dev = deviceLabel();
        int width = dev.length() + 13;
        StringBuilder b = new StringBuilder();
        b.append("Initializing NVMe Controllers\n");
        b.append(String.format(Locale.ROOT, "Attached to NVMe Controller at %s [%04x:%04x]%n", identity.bdf(),
                identity.vendor(), device));
        for (WorkerResult w : workers) {
            b.append(String.format(Locale.ROOT, "Associating %s with lcore %d%n", dev, w.core()));
        }
        b.append("Initialization complete. Launching workers.\n");
        b.append("========================================================\n");
        b.append(String.format(Locale.ROOT, "%" + (width + 2 + 3 * 11) + "s%n", "Latency(us)"));
        b.append(String.format(Locale.ROOT, "%-" + width + "s: %10s %10s %10s %10s %10s%n", "Device Information",
                "IOPS", "MiB/s", "Average", "min", "max"));
        for (WorkerResult w : workers) {
            b.append(row(String.format(Locale.ROOT, "%s from core %2d", dev, w.core()), width, w));
        }
        direct.ifPresent(d -> b.append(row("Direct copy (MemorySegment.copy)", width, d)));
        b.append("========================================================\n");
        b.append(row("Total", width, total()));
        WorkerResult t = total();
        b.append(String.format(Locale.ROOT, "%nCompletion: %s; %s, %d-byte I/O, queue depth %d%s; %s%n",
                options.irq() ? "MSI-X (VFIO eventfd)" : "polled", options.workload().option(), options.ioSize(),
                options.queueDepth(), options.workload().mixed() ? ", " + options.rwMixRead() + "% reads" : "",
                options.iommufd() ? "iommufd IOAS" : "VFIO container (type 1 v2)"));
        b.append(String.format(Locale.ROOT, "Data checked: %d reads verified, %d reads and %d writes timed%n",
                t.verified(), t.reads(), t.writes()));
        return b.toString();
    }

    private static String row(String label, int width, WorkerResult w) {
        return String.format(Locale.ROOT, "%-" + width + "s: %10.2f %10.2f %10.2f %10.2f %10.2f%n", label, w.iops(),
                w.mibPerSecond(), w.averageUs(), w.minLatNs() / 1e3, w.maxLatNs() / 1e3);
    }
}
