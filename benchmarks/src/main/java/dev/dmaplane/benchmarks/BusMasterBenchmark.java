package dev.dmaplane.benchmarks;

import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

/**
 * A device's memory transactions through its IOMMU domain, as an HCA's data path pays them per packet: a 64-byte
 * device read and write ({@link BusMaster#read}/{@link BusMaster#write}: requester checks, the fabric's route,
 * the translation cache or a page-table walk, the copy), and the cut-through copy of 1 MiB from one HCA's mapping
 * to the other's ({@link BusMaster#copyTo}, 4 KiB IOMMU pages on both sides), each next to the plain
 * {@code MemorySegment.copy} of the same size between native segments, measured in the same run. Also 64 copies of
 * 64 bytes (a train of short RDMA WRITEs) as 64 single transfers and as one descriptor chain, next to 64 plain
 * copies.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED"})
public class BusMasterBenchmark {
    private static final int MIB = 1 << 20;

    private Machine machine;
    private BusMaster a;
    private BusMaster b;
    private long srcIova;
    private long dstIova;
    private MemorySegment small;
    private Arena arena;
    private MemorySegment plainSrc;
    private MemorySegment plainDst;

    @Setup(Level.Trial)
    public void boot() {
        machine = Machine.boot(TopologyLoader.defaultMachine(), new Machine.Options(false, 4));
        machine.tracer().setEnabled(false);
        a = master(machine.pci().function("04:00.0"));
        b = master(machine.pci().function("05:00.0"));
        HostMemory ram = machine.memory();
        // 1 MiB blocks: below the 2 MiB a block leaf needs, so each domain maps them with 4 KiB pages
        long src = ram.allocPages(8) << HostMemory.PAGE_SHIFT;
        long dst = ram.allocPages(8) << HostMemory.PAGE_SHIFT;
        srcIova = machine.pci().function("04:00.0").dma().mapSingle(src, MIB, DmaDirection.BIDIRECTIONAL);
        dstIova = machine.pci().function("05:00.0").dma().mapSingle(dst, MIB, DmaDirection.BIDIRECTIONAL);
        small = MemorySegment.ofArray(new byte[64]);
        arena = Arena.ofConfined();
        plainSrc = arena.allocate(MIB, 4096);
        plainDst = arena.allocate(MIB, 4096);
        plainSrc.fill((byte) 0x5a);
    }

    private static BusMaster master(PciFunction fn) {
        fn.setMaster(true);
        fn.dma().setDmaMask(-1L);
        return fn.dma().busMaster();
    }

    @TearDown(Level.Trial)
    public void shutdown() {
        arena.close();
        machine.close();
    }

    @Benchmark
    public MemorySegment deviceRead64() {
        a.read(srcIova + 128, small);
        return small;
    }

    @Benchmark
    public MemorySegment deviceWrite64() {
        b.write(dstIova + 128, small);
        return small;
    }

    @Benchmark
    public MemorySegment baselineCopy64() {
        MemorySegment.copy(plainSrc, 128, small, 0, 64);
        return small;
    }

    @Benchmark
    public long copyTo1m() {
        a.copyTo(srcIova, b, dstIova, MIB);
        return dstIova;
    }

    private static final int DESCRIPTORS = 64;
    private final long[] offsets = new long[DESCRIPTORS];
    private final long[] targetOffsets = new long[DESCRIPTORS];
    private final int[] lengths = new int[DESCRIPTORS];

    @Setup(Level.Trial)
    public void descriptors() {
        for (int i = 0; i < DESCRIPTORS; i++) { // scattered 64-byte pieces within one 4 KiB page on each side
            offsets[i] = 64L * ((i * 7) % DESCRIPTORS);
            targetOffsets[i] = 64L * i;
            lengths[i] = 64;
        }
    }

    @Benchmark
    public long copyTo64x64Singles() {
        for (int i = 0; i < DESCRIPTORS; i++) {
            a.copyTo(srcIova + offsets[i], b, dstIova + targetOffsets[i], 64);
        }
        return dstIova;
    }

    @Benchmark
    public long copyTo64x64Chain() {
        for (int done = 0; done < DESCRIPTORS; ) {
            done += a.copyTo(srcIova, b, dstIova, offsets, targetOffsets, lengths, done, DESCRIPTORS);
        }
        return dstIova;
    }

    @Benchmark
    public MemorySegment baselineCopy64x64() {
        for (int i = 0; i < DESCRIPTORS; i++) {
            MemorySegment.copy(plainSrc, offsets[i], plainDst, targetOffsets[i], 64);
        }
        return plainDst;
    }

    @Benchmark
    public MemorySegment baselineCopy1m() {
        MemorySegment.copy(plainSrc, 0, plainDst, 0, MIB);
        return plainDst;
    }
}
