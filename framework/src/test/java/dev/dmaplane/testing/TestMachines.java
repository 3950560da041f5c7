package dev.dmaplane.testing;

import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.TopologyLoader;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Machine files (the YAML a {@code --topology} or {@code dmaplane.machine} names) kept as test resources under
 * {@code dev/dmaplane/testing/machines/} of the framework's tests jar, so that every module's tests boot the same
 * file instead of a copy of it inline.
 */
public final class TestMachines {
    /**
     * 1 GiB of RAM, the IOMMU on, one root port enforcing ACS at 0000:00:01.0 and the copy-engine GPU
     * ({@code model: copyengine}, 1da0:0001, class 0x030200, 16 MiB of registers in BAR 0, 1 GiB of VRAM in BAR 2) at 0000:01:00.0.
     */
    public static final String SMALL_GPU = "small-gpu.yaml";
    /**
     * 1 GiB of RAM, the IOMMU on, the GPU of {@link #SMALL_GPU} and, below a second root port enforcing ACS, the
     * CRC32C offload engine (1da0:0c32, class 0x120000, 16 KiB of registers in BAR 0 with 4 MSI-X vectors,
     * {@code model: crc}) at 0000:02:00.0.
     */
    public static final String SMALL_CRC = "small-crc.yaml";
    /**
     * 2 GiB of RAM, identity IOMMU domains, a root port over a switch (upstream port 01:00.0, downstream ports
     * 02:00.0 with ACS and 02:01.0), a multi-function endpoint 03:00.0/03:00.1, a legacy endpoint 04:00.0, and an
     * NVMe-class root complex integrated endpoint 00:02.0 with MSI-X.
     */
    public static final String SMALL_SWITCH = "small-switch.yaml";
    /**
     * 1 GiB of RAM and one root port over three endpoints, one per interrupt mode: 01:00.0 with MSI (8 vectors,
     * 64-bit, maskable) beside MSI-X (4), 01:00.1 with MSI only (4, 32-bit, not maskable), 01:00.2 with INTx only.
     */
    public static final String INTERRUPT_MODES = "interrupt-modes.yaml";
    /**
     * The default machine with the framework's copy engine ({@code model: copyengine}) at 0000:03:00.0 where the
     * default machine has the GPU, whose model lives in {@code drivers/gpu}.
     */
    public static final String DEFAULT_COPYENGINE = "default-copyengine.yaml";

    private TestMachines() {
    }

    /** The text of the machine file {@code name}. */
    public static String text(String name) {
        String resource = "machines/" + name;
        try (InputStream in = TestMachines.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new IllegalArgumentException("no machine file " + name + " among the test resources");
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the machine file " + name, e);
        }
    }

    /** The machine of file {@code name} booted with the class path's device models. */
    public static Machine boot(String name) {
        return Machine.boot(TopologyLoader.load(text(name), TopologyLoader.Format.YAML), Machine.Options.DEFAULT);
    }

    /** The machine file {@code name} written into {@code dir}, for what reads a machine from a path. */
    public static Path copy(String name, Path dir) throws IOException {
        return Files.writeString(dir.resolve(name), text(name));
    }
}
