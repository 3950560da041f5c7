package dev.dmaplane.nvmeuser;

/**
 * One worker's figures, as spdk_nvme_perf's {@code struct ns_worker_stats}: I/Os completed within the run time,
 * their bytes and latencies (submission to completion seen), and the data checks made.
 *
 * @param core        the worker's core label
 * @param ios         I/Os completed before the run time ended
 * @param bytes       bytes they moved
 * @param elapsedNs   the run time measured
 * @param totalLatNs  sum of their latencies
 * @param minLatNs    the shortest, 0 without I/O
 * @param maxLatNs    the longest
 * @param reads       reads among them
 * @param writes      writes among them
 * @param verified    reads whose data was checked against what was written
 */
public record WorkerResult(int core, long ios, long bytes, long elapsedNs, long totalLatNs, long minLatNs,
                           long maxLatNs, long reads, long writes, long verified) {
    /** I/Os per second. */
    public double iops() {
        return elapsedNs == 0 ? 0 : ios * 1e9 / elapsedNs;
    }

    /** MiB per second. */
    public double mibPerSecond() {
        return elapsedNs == 0 ? 0 : bytes * 1e9 / elapsedNs / (1 << 20);
    }

    /** Average latency in microseconds. */
    public double averageUs() {
        return ios == 0 ? 0 : totalLatNs / 1e3 / ios;
    }
}
