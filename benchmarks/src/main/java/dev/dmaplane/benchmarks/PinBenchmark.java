package dev.dmaplane.benchmarks;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.PinFlags;
import dev.dmaplane.mm.PinnedPages;
import dev.dmaplane.mm.Prot;
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

import java.lang.foreign.MemorySegment;
import java.util.EnumSet;
import java.util.concurrent.TimeUnit;

/**
 * {@code pin_user_pages(FOLL_WRITE | FOLL_LONGTERM)} + {@code unpin_user_pages} of already-faulted anonymous memory,
 * at several sizes, to show the cost grows linearly with the size (compare the per-page figure across sizes).
 * {@code touch} is the baseline measured in the same run: the CPU writing one byte to every page of the range
 * through the address space (a page-table walk per page, no pinning).
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED"})
public class PinBenchmark {
    private static final long PAGE = 4096;

    @Param({"64", "256", "1024"})
    public int sizeMiB;

    private Machine machine;
    private AddressSpace mm;
    private long addr;
    private long length;
    private final MemorySegment one = MemorySegment.ofArray(new byte[]{1});

    @Setup(Level.Trial)
    public void fault() {
        machine = Machine.boot(TopologyLoader.defaultMachine(), new Machine.Options(false, 4));
        machine.tracer().setEnabled(false);
        mm = machine.newAddressSpace("bench");
        length = (long) sizeMiB << 20;
        addr = mm.mmapAnonymous(length, Prot.PROT_READ | Prot.PROT_WRITE);
        touch();
    }

    @TearDown(Level.Trial)
    public void shutdown() {
        mm.close();
        machine.close();
    }

    @Benchmark
    public long pinUnpin() {
        try (PinnedPages p = mm.pin(addr, length, EnumSet.of(PinFlags.WRITE, PinFlags.LONGTERM))) {
            return p.pageCount();
        }
    }

    @Benchmark
    public long touch() {
        for (long off = 0; off < length; off += PAGE) {
            mm.write(addr + off, one);
        }
        return length;
    }
}
