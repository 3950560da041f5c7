package dev.dmaplane.benchmarks;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

/**
 * Yardsticks measured in the same run as the dmaplane benchmarks, so their figures can be given as ratios that
 * survive a change of machine: the copy of one 4 KiB page between native segments (what the DMA a mapping enables
 * costs at least), and a {@link ConcurrentHashMap} put and remove of one pre-boxed key (the cheapest thread-safe
 * bookkeeping one could put around a mapping).
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
public class BaselineBenchmark {
    private final ConcurrentHashMap<Long, Long> map = new ConcurrentHashMap<>();
    private final Long key = 0x1234_5000L;
    private final Long value = 4096L;
    private Arena arena;
    private MemorySegment src;
    private MemorySegment dst;

    @Setup
    public void setUp() {
        arena = Arena.ofConfined();
        src = arena.allocate(4096, 4096);
        dst = arena.allocate(4096, 4096);
        src.fill((byte) 0x5a);
    }

    @TearDown
    public void tearDown() {
        arena.close();
    }

    @Benchmark
    public Long chmPutRemove() {
        map.put(key, value);
        return map.remove(key);
    }

    @Benchmark
    public MemorySegment segmentCopy4k() {
        MemorySegment.copy(src, 0, dst, 0, 4096);
        return dst;
    }
}
