package dev.dmaplane.vfio;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.TopologyLoader;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The machine file {@code vfio-test.yaml} beside this class, and the assertions every VFIO test shares. */
final class VfioTestMachine {
    /** The copy engine, alone in its group. */
    static final String ENGINE = "0000:01:00.0";
    /** The two functions of one device, sharing a group. */
    static final String FN0 = "0000:02:00.0";
    static final String FN1 = "0000:02:00.1";

    private VfioTestMachine() {
    }

    static Machine boot() {
        return boot(true);
    }

    /** The machine, its IOMMU with dirty tracking ({@code IOMMU_CAP_DIRTY_TRACKING}) or without. */
    static Machine boot(boolean dirtyTracking) {
        String text = text();
        if (!dirtyTracking) {
            text = text.replace("defaultDomain: dma }", "defaultDomain: dma, dirtyTracking: false }");
        }
        return Machine.boot(TopologyLoader.load(text, TopologyLoader.Format.YAML), Machine.Options.DEFAULT);
    }

    /** The machine with {@code rootPorts}, YAML of more root ports of the host bridge, after the others. */
    static Machine bootWith(String rootPorts) {
        return Machine.boot(TopologyLoader.load(text() + rootPorts, TopologyLoader.Format.YAML),
                Machine.Options.DEFAULT);
    }

    private static String text() {
        try (InputStream in = VfioTestMachine.class.getResourceAsStream("vfio-test.yaml")) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read vfio-test.yaml", e);
        }
    }

    /** Asserts that {@code call} fails with {@code errno}; returns the exception for its message. */
    static ErrnoException fails(Errno errno, Runnable call) {
        ErrnoException e = assertThrows(ErrnoException.class, call::run);
        assertEquals(errno, e.errno(), e.getMessage());
        return e;
    }

    /** As {@link #fails(Errno, Runnable)}, with what the case is. */
    static ErrnoException fails(Errno errno, Runnable call, String what) {
        ErrnoException e = assertThrows(ErrnoException.class, call::run, what);
        assertEquals(errno, e.errno(), what + ": " + e.getMessage());
        return e;
    }
}
