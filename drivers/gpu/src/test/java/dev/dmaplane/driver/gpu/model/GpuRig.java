package dev.dmaplane.driver.gpu.model;

import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Random;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The GPU as a driver sees it (what {@code amdgpu_device_init} and a ring's {@code amdgpu_ring_commit} do, reduced):
 * the machine of {@code gpu-machine.yaml} with the model added explicitly, BAR0 and the VRAM window, MSI-X vectors
 * 0..2 counted by triggers, a 16-entry ring per engine in coherent host memory, a fence slot per engine, and host
 * buffers mapped for the GPU.
 */
final class GpuRig implements AutoCloseable {
    static final String GPU = "0000:01:00.0";
    static final int RING_ENTRIES = 16;
    static final Duration WAIT = Duration.ofSeconds(20);
    static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    final Machine machine;
    final PciFunction fn;
    final Bar.Mmio regs;
    final Bar.Memory window;
    final DeviceModel model;
    final IrqTrigger[] irq = {new IrqTrigger(), new IrqTrigger(), new IrqTrigger()};
    final CoherentBuffer[] rings = new CoherentBuffer[ENGINE_COUNT];
    final CoherentBuffer fences;
    final IrqVectors vectors;
    private final long[] tails = new long[ENGINE_COUNT];
    private long seqno;
    GpuDevice device;

    GpuRig() {
        machine = Machine.boot(TopologyLoader.load(machineFile(), TopologyLoader.Format.YAML),
                Machine.Options.DEFAULT.withClassPathModels(false));
        fn = machine.pci().function(GPU);
        model = new DeviceModel() {
            @Override
            public String name() {
                return GpuModel.NAME;
            }

            @Override
            public ModelDevice realize(ModelContext ctx) {
                device = (GpuDevice) new GpuModel().realize(ctx);
                return device;
            }
        };
        machine.addModel(model);
        assertTrue(fn.isPresent(), "the model realized the GPU");
        regs = fn.bar(0).orElseThrow().mmio();
        window = fn.bar(2).orElseThrow().memory();
        fn.setMemorySpace(true);
        fn.setMaster(true);
        vectors = IrqVectors.alloc(fn, ENGINE_COUNT, ENGINE_COUNT, IrqVectors.PCI_IRQ_MSIX);
        for (int e = 0; e < ENGINE_COUNT; e++) {
            vectors.requestTrigger(e, irq[e], "gpu-test-" + ENGINE_NAMES[e]);
        }
        fences = fn.dma().allocCoherent(4096);
        for (int e = 0; e < ENGINE_COUNT; e++) {
            rings[e] = fn.dma().allocCoherent((long) RING_ENTRIES * DESC_SIZE);
            enable(e);
        }
    }

    private static String machineFile() {
        try (InputStream in = GpuRig.class.getResourceAsStream("gpu-machine.yaml")) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    long reg(int engine, int offset) {
        return regs.read(engineBase(engine) + offset, 8);
    }

    void setReg(int engine, int offset, long value) {
        regs.write(engineBase(engine) + offset, 8, value);
    }

    /** Programs engine {@code e}'s ring (SYSTEM aperture), fence slot and enable, as a driver's ring init does. */
    void enable(int e) {
        setReg(e, RING_BASE, rings[e].dmaAddress() | APERTURE_SYSTEM);
        setReg(e, RING_SIZE, RING_ENTRIES);
        setReg(e, RING_FENCE_ADDR, (fences.dmaAddress() + 8L * e) | APERTURE_SYSTEM);
        setReg(e, RING_CTRL, CTRL_ENABLE);
        tails[e] = reg(e, RING_TAIL);
    }

    /** Engine reset keeping the engine enabled; the driver's tail stays where it was (head := tail). */
    void resetEngine(int e) {
        setReg(e, RING_CTRL, CTRL_RESET | CTRL_ENABLE);
    }

    long fence(int e) {
        return fences.cpu().get(U64, 8L * e);
    }

    /** Fills the next descriptor of engine {@code e}, rings the doorbell and returns the descriptor in the ring. */
    MemorySegment submit(int e, int op, int flags, int vm, long... args) {
        MemorySegment d = rings[e].cpu().asSlice((tails[e] & (RING_ENTRIES - 1)) * DESC_SIZE, DESC_SIZE);
        d.fill((byte) 0);
        d.set(U32, DESC_OPCODE, op);
        d.set(U32, DESC_FLAGS, flags);
        d.set(U32, DESC_VM, vm);
        d.set(U32, DESC_STATUS, ST_PENDING);
        d.set(U64, DESC_SEQNO, ++seqno);
        for (int i = 0; i < args.length; i++) {
            d.set(U64, DESC_ARG0 + 8L * i, args[i]);
        }
        setReg(e, RING_TAIL, ++tails[e]);
        return d;
    }

    /** Waits, bounded, until engine {@code e} is idle with every descriptor run, or halted; returns the descriptor's status. */
    int await(int e, MemorySegment d) {
        eventually(() -> {
            long ctrl = reg(e, RING_CTRL);
            return (ctrl & CTRL_BUSY) == 0 && (reg(e, RING_HEAD) == tails[e] || (ctrl & CTRL_HALTED) != 0);
        }, WAIT,
                ENGINE_NAMES[e] + " neither finished nor halted");
        return d.get(U32, DESC_STATUS);
    }

    /** Submits and waits: the descriptor's status. */
    int run(int e, int op, int flags, int vm, long... args) {
        return await(e, submit(e, op, flags, vm, args));
    }

    long lastSeqno() {
        return seqno;
    }

    /** {@code bytes} in fresh host pages mapped for the GPU ({@code direction}); the GPU sees SYSTEM | bus address. */
    HostBuffer host(int bytes, DmaDirection direction) {
        int order = 64 - Long.numberOfLeadingZeros((bytes - 1L) >> HostMemory.PAGE_SHIFT);
        long phys = machine.memory().allocPages(order) << HostMemory.PAGE_SHIFT;
        long bus = fn.dma().mapSingle(phys, bytes, direction);
        return new HostBuffer(bus | APERTURE_SYSTEM, machine.memory().slice(phys, bytes));
    }

    /** A host buffer: its aperture-tagged bus address and the CPU's view. */
    record HostBuffer(long gpuAddr, MemorySegment cpu) {
        byte[] bytes() {
            return cpu.toArray(ValueLayout.JAVA_BYTE);
        }

        void put(byte[] b) {
            MemorySegment.copy(b, 0, cpu, ValueLayout.JAVA_BYTE, 0, b.length);
        }
    }

    static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    byte[] readVram(long offset, int n) {
        MemorySegment s = MemorySegment.ofArray(new byte[n]);
        window.read(offset, s);
        return s.toArray(ValueLayout.JAVA_BYTE);
    }

    /** Threads named after this GPU still alive. */
    static long gpuThreads() {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().startsWith(GPU + " gpu ") && t.isAlive()).count();
    }

    @Override
    public void close() {
        machine.close();
    }
}
