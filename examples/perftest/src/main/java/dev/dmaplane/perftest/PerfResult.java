package dev.dmaplane.perftest;

import java.util.List;

/**
 * What a run measured: one row per size, and the report as perftest prints it.
 *
 * @param config what ran
 * @param rows   one per size: {@link Bw} for bandwidth tests, {@link Lat} for latency tests
 * @param report header, column titles and rows, as text
 */
public record PerfResult(PerfConfig config, List<Row> rows, String report) {
    /** One line of the table. */
    public sealed interface Row permits Bw, Lat {
        int bytes();

        long iterations();
    }

    /** {@code #bytes #iterations BW peak BW average MsgRate[Mpps]}; bandwidths in MB/sec or Gb/sec per config. */
    public record Bw(int bytes, long iterations, double bwPeak, double bwAverage, double msgRateMpps) implements Row {
    }

    /**
     * Latency percentiles in microseconds (one way: round trip / 2 for write_lat and send_lat), and every sample in
     * the order measured when {@code -H} or {@code -U} asked for them (empty otherwise).
     */
    public record Lat(int bytes, long iterations, double tMin, double tMax, double tTypical, double tAvg,
                      double tStdev, double p99, double p999, List<Double> samples) implements Row {
        public Lat {
            samples = List.copyOf(samples);
        }
    }
}
