package dev.dmaplane.benchmarks;

import org.junit.jupiter.api.Test;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.options.Options;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.runner.options.VerboseMode;

import java.util.Collection;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every JMH benchmark of this module runs once, its setup and teardown included, so that a benchmark whose machine,
 * model or API moved under it fails the build instead of only the next measurement (InterruptLatencyBenchmark's
 * setup failed unnoticed once its GPU became a model of another module). A smoke run, not a measurement: in this
 * JVM (no fork), one call per benchmark and parameter set ({@link Mode#SingleShotTime}), no warm-up; JMH's
 * {@code shouldFailOnError} turns any exception of a benchmark into a {@link RunnerException}.
 */
class BenchmarksRunOnceTest {
    @Test
    void everyBenchmarkRunsOnce() throws RunnerException {
        Options opts = new OptionsBuilder()
                .include("dev\\.dmaplane\\.benchmarks\\..*")
                .forks(0)
                .warmupIterations(0)
                .measurementIterations(1)
                .mode(Mode.SingleShotTime)
                .shouldFailOnError(true)
                .verbosity(VerboseMode.SILENT)
                .build();
        Collection<RunResult> results = new Runner(opts).run();
        assertFalse(results.isEmpty(), "JMH found no benchmark");
        for (RunResult r : results) {
            assertTrue(r.getPrimaryResult().getSampleCount() >= 1, r.getParams().getBenchmark() + " ran no call");
        }
    }
}
