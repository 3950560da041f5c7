package dev.dmaplane.benchmarks;

import dev.dmaplane.iommu.IoPageTable;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;

/**
 * The {@code iommu_map} / {@code iommu_unmap} page-table cost of one mapping, and the walk a device access pays.
 * {@code mapUnmap4k} maps next to a page that stays mapped, so its tables stay; {@code mapUnmap4kAlone} maps in an
 * otherwise empty 512 GiB region, so unmap unhooks three tables and map hangs them back each time.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
public class IoPageTableBenchmark {
    private static final long K4 = 4096;
    private static final long M2 = 2L << 20;
    private static final int RW = IoPageTable.PROT_READ | IoPageTable.PROT_WRITE;
    private static final long BUSY = 0x40_0000_0000L;
    private static final long ALONE = 0x80_0000_0000L;

    private IoPageTable table;

    @Setup
    public void setUp() {
        table = new IoPageTable();
        table.map(BUSY, 0x1_0000_0000L, K4, RW); // neighbour of the 4 KiB pair
        table.map(BUSY + 4 * M2, 0x2_0000_0000L, M2, RW); // neighbour of the 2 MiB pair
        table.map(BUSY + 64 * M2, 0x3_0000_0000L, 256 * M2, RW); // 512 MiB of blocks to walk
    }

    @Benchmark
    public long mapUnmap4k() {
        table.map(BUSY + K4, 0x5000_0000L, K4, RW);
        return table.unmap(BUSY + K4, K4);
    }

    @Benchmark
    public long mapUnmap4kAlone() {
        table.map(ALONE, 0x5000_0000L, K4, RW);
        return table.unmap(ALONE, K4);
    }

    @Benchmark
    public long mapUnmap2m() {
        table.map(BUSY + 2 * M2, 0x4000_0000L, M2, RW);
        return table.unmap(BUSY + 2 * M2, M2);
    }

    @Benchmark
    public long walk() {
        long iova = BUSY + 64 * M2 + 0x12345;
        return IoPageTable.physOf(table.walk(iova), iova);
    }
}
