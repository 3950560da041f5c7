package dev.dmaplane.benchmarks;

import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.TopologyLoader;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

import java.util.concurrent.TimeUnit;

/**
 * The whole streaming-DMA path a driver pays per I/O ({@code dma_map_single} + {@code dma_unmap_single} through
 * {@code dma-iommu}): argument checks, IOVA allocation under the device's mask, the IOMMU page-table update, the
 * live-mapping table, and the unmap in reverse. On the default machine's GPU (a DMA domain), dma-debug off as in
 * production; {@code trace} switches the machine's trace ring on or off.
 */
@State(Scope.Thread)
@BenchmarkMode({Mode.AverageTime, Mode.SampleTime})
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED"})
public class DmaMapBenchmark {
    @Param({"false", "true"})
    public boolean trace;

    private Machine machine;
    private DmaApi dma;
    private long page4k;
    private long huge2m;

    @Setup(Level.Trial)
    public void boot() {
        machine = Machine.boot(TopologyLoader.defaultMachine(), new Machine.Options(false, 4));
        machine.tracer().setEnabled(trace);
        dma = machine.pci().function("03:00.0").dma();
        dma.setDmaMask(-1L);
        page4k = machine.memory().allocPages(0) << HostMemory.PAGE_SHIFT;
        huge2m = machine.memory().allocPages(HostMemory.MAX_ORDER) << HostMemory.PAGE_SHIFT;
    }

    @TearDown(Level.Trial)
    public void shutdown() {
        machine.close();
    }

    @Benchmark
    public long mapUnmap4k() {
        long d = dma.mapSingle(page4k, 4096, DmaDirection.TO_DEVICE);
        dma.unmapSingle(d, 4096, DmaDirection.TO_DEVICE);
        return d;
    }

    @Benchmark
    public long mapUnmap2m() {
        long d = dma.mapSingle(huge2m, HostMemory.HUGE_PAGE_SIZE, DmaDirection.BIDIRECTIONAL);
        dma.unmapSingle(d, HostMemory.HUGE_PAGE_SIZE, DmaDirection.BIDIRECTIONAL);
        return d;
    }
}
