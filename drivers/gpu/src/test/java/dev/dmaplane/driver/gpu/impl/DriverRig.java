package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.accel.spi.Aperture;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.driver.gpu.model.GpuDevice;
import dev.dmaplane.driver.gpu.model.GpuModel;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
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
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The gpu module's test machine ({@code gpu-machine.yaml}) booted without class-path models, the GPU model added
 * explicitly and the driver registered on the plain class path, as crc's driver tests do; host buffers mapped for
 * the GPU with {@code dma_map_single} and unmapped at close.
 */
final class DriverRig implements AutoCloseable {
    static final String GPU = "0000:01:00.0";
    static final Duration WAIT = Duration.ofSeconds(20);
    static final String MACHINE = "gpu-machine.yaml";
    /** The default machine's VRAM: a 16 GiB window that is all of VRAM. */
    static final String MACHINE_16G = "gpu-16g-machine.yaml";

    final Machine machine;
    final PciFunction fn;
    /** The GPU model, keeping the device it realizes for the tests that look at the hardware's side. */
    final DeviceModel model = new DeviceModel() {
        @Override
        public String name() {
            return GpuModel.NAME;
        }

        @Override
        public ModelDevice realize(ModelContext ctx) {
            GpuDevice d = (GpuDevice) new GpuModel().realize(ctx);
            device = d;
            return d;
        }
    };
    /** The device {@link #model} realized last. */
    volatile GpuDevice device;
    final GpuDriver driver;
    final long framesAtBoot;
    private final List<HostBuffer> buffers = new ArrayList<>();

    /** The GPU of {@code gpu-machine.yaml} (a 256 MiB window onto 1 GiB of VRAM). */
    DriverRig(GpuOptions options) {
        this(MACHINE, options);
    }

    /** The GPU of the machine file {@code file} of the model's test resources. */
    DriverRig(String file, GpuOptions options) {
        machine = Machine.boot(TopologyLoader.load(machineFile(file), TopologyLoader.Format.YAML),
                Machine.Options.DEFAULT.withClassPathModels(false));
        fn = machine.pci().function(GPU);
        framesAtBoot = machine.memory().allocatedFrames();
        machine.addModel(model);
        driver = new GpuDriver(machine, options);
        machine.devices().registerDriver(driver);
    }

    DriverRig() {
        this(GpuOptions.DEFAULT.withRingEntries(64));
    }

    BoundGpu gpu() {
        return driver.gpu(GPU).orElseThrow(() -> new AssertionError("the GPU is not bound"));
    }

    Bar.Memory window() {
        return fn.bar(2).orElseThrow().memory();
    }

    private static String machineFile(String name) {
        try (InputStream in = DriverRig.class.getResourceAsStream("/dev/dmaplane/driver/gpu/model/" + name)) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** {@code bytes} of fresh host pages mapped bidirectionally for the GPU. */
    HostBuffer host(int bytes) {
        int order = 64 - Long.numberOfLeadingZeros((bytes - 1L) >> HostMemory.PAGE_SHIFT);
        long phys = machine.memory().allocPages(order) << HostMemory.PAGE_SHIFT;
        long bus = fn.dma().mapSingle(phys, bytes, DmaDirection.BIDIRECTIONAL);
        HostBuffer b = new HostBuffer(phys, bus, bytes, order, machine.memory().slice(phys, bytes));
        buffers.add(b);
        return b;
    }

    /** A host buffer: physical and bus address, the CPU's view. */
    record HostBuffer(long phys, long bus, int length, int order, MemorySegment cpu) {
        GpuRun run() {
            return new GpuRun(Aperture.SYSTEM, bus, length);
        }

        byte[] bytes() {
            return cpu.toArray(ValueLayout.JAVA_BYTE);
        }

        void put(byte[] b) {
            MemorySegment.copy(b, 0, cpu, ValueLayout.JAVA_BYTE, 0, b.length);
        }
    }

    /** Unmaps and frees the host buffers while the device is still there. */
    void freeBuffers() {
        for (HostBuffer b : buffers) {
            if (fn.isPresent()) {
                fn.dma().unmapSingle(b.bus(), b.length(), DmaDirection.BIDIRECTIONAL);
            }
            machine.memory().putPage(b.phys() >>> HostMemory.PAGE_SHIFT);
        }
        buffers.clear();
    }

    static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    byte[] readVram(long offset, int n) {
        MemorySegment s = MemorySegment.ofArray(new byte[n]);
        window().read(offset, s);
        return s.toArray(ValueLayout.JAVA_BYTE);
    }

    void writeVram(long offset, byte[] b) {
        window().write(offset, MemorySegment.ofArray(b));
    }

    static void await(Fence f) {
        assertTrue(f.await(WAIT), f + " did not signal within " + WAIT);
    }

    /** Threads of the driver and the model still alive for this GPU. */
    static List<String> gpuThreads() {
        return Thread.getAllStackTraces().keySet().stream().filter(Thread::isAlive).map(Thread::getName)
                .filter(n -> n.startsWith("drm_sched-" + GPU) || n.startsWith("irq/") && n.contains("-gpu-"))
                .toList();
    }

    @Override
    public void close() {
        freeBuffers();
        machine.close();
    }
}
