package dev.dmaplane.benchmarks;

import dev.dmaplane.iommu.IovaAllocator;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;

/**
 * The {@code dma_map_single} / {@code dma_unmap_single} IOVA cost: one {@link IovaAllocator#alloc} and the matching
 * {@link IovaAllocator#free}. 4 KiB takes the per-CPU cache path; 2 MiB is above the cached sizes and goes through
 * the free-range tree every time. {@code background} live allocations with holes between them give the tree some
 * depth, as a busy domain has.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
public class IovaBenchmark {
    private static final long K4 = 4096;
    private static final long M2 = 2L << 20;
    private static final long LIMIT = 1L << 40;

    @Param({"0", "10000"})
    public int background;

    private IovaAllocator allocator;

    @Setup
    public void setUp() {
        allocator = new IovaAllocator(K4, 1L << 20, LIMIT);
        long[] held = new long[background * 2];
        for (int i = 0; i < held.length; i++) {
            held[i] = allocator.alloc(33 * K4, LIMIT); // not a cached size: every other one leaves a tree hole
        }
        for (int i = 0; i < held.length; i += 2) {
            allocator.free(held[i], 33 * K4);
        }
        allocator.free(allocator.alloc(K4, LIMIT), K4); // warm the cache with one page
    }

    @Benchmark
    public long allocFree4k() {
        long iova = allocator.alloc(K4, LIMIT);
        allocator.free(iova, K4);
        return iova;
    }

    @Benchmark
    public long allocFree2m() {
        long iova = allocator.alloc(M2, LIMIT);
        allocator.free(iova, M2);
        return iova;
    }
}
