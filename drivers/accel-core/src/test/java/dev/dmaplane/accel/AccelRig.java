package dev.dmaplane.accel;

import dev.dmaplane.accel.spi.AccelDeviceHandle;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.function.UnaryOperator;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A machine from {@code accel-test.yaml} (an accelerator with a 2 MiB memory BAR and no model) with the test
 * provider registered: 6 MiB of VRAM, the first 2 MiB visible.
 */
final class AccelRig implements AutoCloseable {
    static final long MIB = 1 << 20;
    static final long VRAM = 6 * MIB;

    final Machine machine;
    final PciFunction fn;
    final TestGpu gpu;
    final TestAccelProvider provider;
    final AccelCore core;
    final AccelDeviceHandle handle;
    final AccelDevice device;

    AccelRig() {
        this("accel-test.yaml", "0000:01:00.0");
    }

    /** With the test provider's job timeout {@code jobTimeout}. */
    AccelRig(Duration jobTimeout) {
        this("accel-test.yaml", "0000:01:00.0", UnaryOperator.identity(), jobTimeout);
    }

    /** The machine of the test resource {@code file} with the test provider on the function {@code bdf}. */
    AccelRig(String file, String bdf) {
        this(file, bdf, UnaryOperator.identity());
    }

    /** As {@link #AccelRig(String, String)}, the machine file's text changed by {@code edit} first. */
    AccelRig(String file, String bdf, UnaryOperator<String> edit) {
        this(file, bdf, edit, Duration.ofSeconds(10));
    }

    private AccelRig(String file, String bdf, UnaryOperator<String> edit, Duration jobTimeout) {
        machine = Machine.boot(TopologyLoader.load(edit.apply(text(file)), TopologyLoader.Format.YAML),
                Machine.Options.DEFAULT.withClassPathModels(false));
        fn = machine.pci().function(bdf);
        gpu = new TestGpu(fn, 2, VRAM);
        provider = new TestAccelProvider(fn, gpu, 2, VRAM, jobTimeout);
        core = AccelCore.of(machine);
        handle = core.register(provider);
        device = core.device(handle.name()).orElseThrow();
    }

    /**
     * VRAM not handed out, once the copy engine ran everything queued so far (a freed object's memory comes back
     * when its last fence signals: {@code ttm_bo_delayed_delete}).
     */
    long vramAvailableWhenIdle() {
        assertTrue(provider.clear("sync", List.of()).await(Duration.ofSeconds(10)), "the copy engine went idle");
        return device.vramAvailable();
    }

    private static String text(String file) {
        try (InputStream in = AccelRig.class.getResourceAsStream(file)) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Override
    public void close() throws InterruptedException {
        gpu.release();
        handle.unregister();
        provider.close();
        gpu.close();
        machine.close();
    }
}
