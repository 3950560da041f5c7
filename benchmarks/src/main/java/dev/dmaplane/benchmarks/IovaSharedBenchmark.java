package dev.dmaplane.benchmarks;

import dev.dmaplane.iommu.IovaAllocator;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Threads;

/**
 * Two threads mapping and unmapping through one domain at once, as two CPUs running {@code dma_map_single} on the
 * same device: the per-CPU caches and the striped live table should keep them out of each other's way.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@Threads(2)
public class IovaSharedBenchmark {
    private static final long K4 = 4096;
    private static final long LIMIT = 1L << 40;

    private IovaAllocator allocator;

    @Setup
    public void setUp() {
        allocator = new IovaAllocator(K4, 1L << 20, LIMIT);
    }

    @Benchmark
    public long allocFree4kTwoThreads() {
        long iova = allocator.alloc(K4, LIMIT);
        allocator.free(iova, K4);
        return iova;
    }
}
