package dev.dmaplane.benchmarks;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.nvmeuser.DmaRegion;
import dev.dmaplane.nvmeuser.NvmeController;
import dev.dmaplane.nvmeuser.PerfOptions;
import dev.dmaplane.nvmeuser.QueuePair;
import dev.dmaplane.vfio.nvme.NvmeCommand;
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

import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * The emulated NVMe controller's command path as {@code nvme perf} drives it (issue 13): one polled queue pair
 * through VFIO with {@code DEPTH} commands in flight, each invocation reaping one completion and submitting the
 * next 4 KiB command at a random page of the first {@code SPAN} bytes of the namespace. {@code op} is a Read or a
 * Write; {@code pages} says whether the Reads find cached pages ({@code cached}: the span was written first) or holes.
 * Run with {@code -prof gc} for the bytes each command allocates (the controller's engine thread included).
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED"})
public class NvmeCommandBenchmark {
    private static final int DEPTH = 32;
    private static final int IO = 4096;
    private static final long SPAN = 64L << 20;

    @Param({"read", "write"})
    public String op;

    @Param({"cached", "hole"})
    public String pages;

    private Machine machine;
    private NvmeController ctrl;
    private QueuePair qp;
    private DmaRegion buffers;
    private int opcode;
    private int blocksPerIo;
    private final SplittableRandom rnd = new SplittableRandom(13);
    private int completedNow;
    private int next;
    private final QueuePair.CompletionHandler handler = (cid, status, dw0) -> {
        if (status != 0) {
            throw new IllegalStateException("command " + cid + " failed with status " + status);
        }
        completedNow++;
    };

    @Setup(Level.Trial)
    public void attach() {
        machine = Machine.bootDefault();
        machine.tracer().setEnabled(false);
        ctrl = NvmeController.attach(machine, PerfOptions.DEFAULT_BDF, NvmeController.Options.DEFAULT);
        qp = ctrl.createIoQueuePair(DEPTH + 1, IO, false);
        buffers = DmaRegion.allocate(ctrl.frontEnd(), DmaRegion.UNIT);
        blocksPerIo = IO / ctrl.identity().blockSize();
        if (pages.equals("cached")) {
            for (long at = 0; at < SPAN; at += IO) {
                ctrl.io(qp, NvmeCommand.NVM_WRITE, at / ctrl.identity().blockSize(), buffers, 0, IO);
            }
        }
        opcode = op.equals("read") ? NvmeCommand.NVM_READ : NvmeCommand.NVM_WRITE;
        for (int i = 0; i < DEPTH; i++) {
            submit();
        }
    }

    /** The next command, into the next of {@code DEPTH} buffers in turn. */
    private void submit() {
        long slba = (long) rnd.nextInt((int) (SPAN / IO)) * blocksPerIo;
        qp.submitIo(opcode, NvmeController.NSID, slba, blocksPerIo, buffers, (long) (next++ % DEPTH) * IO, IO);
    }

    /**
     * Reaps one completion (polling) and puts the next command in its place; an empty poll yields the CPU, as
     * {@code nvme perf}'s poller does, so that on a machine with few cores the controller's engine gets to run.
     */
    @Benchmark
    public int command() {
        completedNow = 0;
        while (qp.poll(handler, 1) == 0) {
            Thread.yield();
        }
        submit();
        return completedNow;
    }

    @TearDown(Level.Trial)
    public void detach() {
        while (qp.outstanding() > 0) {
            qp.poll(handler, DEPTH);
        }
        buffers.close();
        qp.close();
        ctrl.close();
        machine.close();
    }
}
