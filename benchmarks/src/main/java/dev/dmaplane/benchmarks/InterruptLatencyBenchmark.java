package dev.dmaplane.benchmarks;

import dev.dmaplane.irq.IrqReturn;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.Msix;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRegs;
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
import org.openjdk.jmh.annotations.Threads;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * Interrupt delivery latency from a device model's {@link Msix#raise} to the handler ({@code handle_edge_irq} and
 * {@code irq_thread} in {@code kernel/irq/}), on MSI-X vectors of the default machine's GPU (0000:03:00.0): the hard
 * handler run on the raising thread; the threaded handler on the vector's irq thread signalling back to the
 * benchmark thread, a round trip; and, as the baseline of the same run, the same round trip between two plain
 * threads with {@link LockSupport#unpark}. Also a raise while the vector is masked, delivered by unmasking it.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED"})
@Threads(1)
public class InterruptLatencyBenchmark {
    private static final int HARD = 0;
    private static final int THREADED = 1;
    private static final int MASKED = 2;
    /** How long one round trip may take before the benchmark gives up instead of hanging. */
    private static final long TIMEOUT_NS = TimeUnit.SECONDS.toNanos(10);

    private Machine machine;
    private Msix msix;
    private Bar.Mmio bar;
    private IrqVectors vectors;
    private long hardRuns;
    private long maskedRuns;
    private Thread partner;
    private volatile Thread waiter;
    private volatile boolean replied;
    private volatile boolean pinged;
    private volatile boolean stopping;

    @Setup(Level.Trial)
    public void boot() {
        machine = Machine.boot(TopologyLoader.defaultMachine(), new Machine.Options(false, 4));
        machine.tracer().setEnabled(false);
        PciFunction gpu = machine.pci().function("03:00.0");
        gpu.setMemorySpace(true);
        gpu.setMaster(true);
        msix = gpu.msix().orElseThrow();
        bar = gpu.bar(msix.bar()).orElseThrow().mmio();
        vectors = IrqVectors.alloc(gpu, 3, 3, IrqVectors.PCI_IRQ_MSIX);
        vectors.request(HARD, v -> {
            hardRuns++;
            return IrqReturn.HANDLED;
        }, null, "bench-hard");
        vectors.request(THREADED, null, v -> {
            reply();
            return IrqReturn.HANDLED;
        }, "bench-threaded");
        vectors.request(MASKED, v -> {
            maskedRuns++;
            return IrqReturn.HANDLED;
        }, null, "bench-masked");
        partner = Thread.ofPlatform().name("bench-unpark-partner").daemon().start(this::partnerLoop);
    }

    /** The thread that measures parks for the replies; JMH may run iterations on different threads. */
    @Setup(Level.Iteration)
    public void takeWaiter() {
        waiter = Thread.currentThread();
    }

    @TearDown(Level.Trial)
    public void shutdown() throws InterruptedException {
        try {
            stopping = true;
            LockSupport.unpark(partner);
            partner.join(TimeUnit.NANOSECONDS.toMillis(TIMEOUT_NS));
            if (partner.isAlive()) {
                throw new IllegalStateException(partner.getName() + " did not stop within 10 s");
            }
            long handled = vectors.interrupts(HARD);
            if (handled != hardRuns || vectors.interrupts(MASKED) != maskedRuns
                    || vectors.unhandled(HARD) + vectors.unhandled(THREADED) + vectors.unhandled(MASKED) != 0) {
                throw new IllegalStateException("interrupts lost or unhandled: " + vectors.procInterrupts());
            }
        } finally {
            vectors.close();
            machine.close();
        }
    }

    @Benchmark
    public Msix.Outcome hardHandler() {
        return msix.raise(HARD);
    }

    @Benchmark
    public Msix.Outcome threadedHandler() {
        replied = false;
        Msix.Outcome o = msix.raise(THREADED);
        awaitReply();
        return o;
    }

    @Benchmark
    public boolean unparkRoundTrip() {
        replied = false;
        pinged = true;
        LockSupport.unpark(partner);
        awaitReply();
        return replied;
    }

    @Benchmark
    public Msix.Outcome maskedThenUnmasked() {
        long ctrl = msix.tableOffset() + (long) MASKED * PciRegs.MSIX_ENTRY_SIZE + PciRegs.MSIX_ENTRY_VECTOR_CTRL;
        bar.write(ctrl, 4, PciRegs.MSIX_ENTRY_CTRL_MASKBIT);
        Msix.Outcome o = msix.raise(MASKED);
        bar.write(ctrl, 4, 0);
        return o;
    }

    /** The reply of the threaded handler or of the partner: flag, then wake the waiter. */
    private void reply() {
        replied = true;
        LockSupport.unpark(waiter);
    }

    /** Parks until {@link #reply} was seen; a permit left from an earlier round only costs one more look. */
    private void awaitReply() {
        long since = 0;
        while (!replied) {
            LockSupport.parkNanos(this, TIMEOUT_NS);
            if (!replied) {
                long now = System.nanoTime();
                if (since == 0) {
                    since = now;
                } else if (now - since > TIMEOUT_NS) {
                    throw new IllegalStateException("no reply within 10 s");
                }
            }
        }
    }

    private void partnerLoop() {
        while (!stopping) {
            if (pinged) {
                pinged = false;
                reply();
            } else {
                LockSupport.park(this);
            }
        }
    }
}
