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
 * Two threads mapping and unmapping at once, as two CPUs running {@code dma_map_single}. {@code sharedDomain} has
 * both use one allocator, which the per-CPU caches and the striped live table should keep out of each other's way;
 * {@code privateDomains} gives each thread its own allocator and so shares nothing: it is the control that shows
 * what two threads on this machine get when there is no contention at all.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@Threads(2)
public class IovaSharedBenchmark {
    private static final long K4 = 4096;
    private static final long LIMIT = 1L << 40;

    /** One domain for all benchmark threads. */
    @State(Scope.Benchmark)
    public static class Shared {
        IovaAllocator allocator;

        @Setup
        public void setUp() {
            allocator = new IovaAllocator(K4, 1L << 20, LIMIT);
        }
    }

    /** One domain per benchmark thread. */
    @State(Scope.Thread)
    public static class Private {
        IovaAllocator allocator;

        @Setup
        public void setUp() {
            allocator = new IovaAllocator(K4, 1L << 20, LIMIT);
        }
    }

    @Benchmark
    public long sharedDomain(Shared s) {
        long iova = s.allocator.alloc(K4, LIMIT);
        s.allocator.free(iova, K4);
        return iova;
    }

    @Benchmark
    public long privateDomains(Private p) {
        long iova = p.allocator.alloc(K4, LIMIT);
        p.allocator.free(iova, K4);
        return iova;
    }
}
