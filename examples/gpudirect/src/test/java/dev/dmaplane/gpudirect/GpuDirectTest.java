package dev.dmaplane.gpudirect;

import dev.dmaplane.driver.gpu.host.GpuHost;
import dev.dmaplane.driver.softroce.host.SoftRoceHost;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import org.junit.jupiter.api.Test;

import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The headline demo through its public API on a plain class path, on the default machine's layout with 512 MiB of
 * VRAM: every check of every scenario holds, peer-to-peer writes no host byte and the bounce path one per byte
 * ({@code Documentation/driver-api/pci/p2pdma.rst}), and the machine is left as it was found.
 */
class GpuDirectTest {
    private static final long MIB = 1 << 20;
    private static final GpuDirectConfig SMALL = GpuDirectConfig.DEFAULT.withSize(16 * MIB);

    private static Path machineFile(String name) throws URISyntaxException {
        return Path.of(GpuDirectTest.class.getResource("/" + name).toURI());
    }

    private static GpuDirectReport run(String machineFile, GpuDirectConfig cfg) throws Exception {
        try (Machine m = Machine.boot(machineFile(machineFile));
             GpuHost gpu = GpuHost.on(m);
             SoftRoceHost rxe = SoftRoceHost.on(m)) {
            long frames = m.memory().allocatedFrames();
            long pinned = m.memory().pinnedFrames();
            GpuDirectReport r = GpuDirect.run(m, gpu.core(), rxe.core(), cfg);
            assertEquals(pinned, m.memory().pinnedFrames(), "nothing left pinned");
            assertEquals(frames, m.memory().allocatedFrames(), "every frame the demo took came back");
            assertEquals(0, rxe.core().device(GpuDirect.NEAR).orElseThrow().objectCount(), "no verbs object left");
            assertTrue(gpu.devices().getFirst().contexts().isEmpty(), "no accel context left");
            return r;
        }
    }

    private static String failures(GpuDirectReport r) {
        return r.failures().stream().map(GpuDirectReport.Check::what).collect(Collectors.joining("\n"))
                + "\n--- report ---\n" + r.text();
    }

    @Test
    void everyScenarioHoldsOnTheDefaultLayout() throws Exception {
        GpuDirectReport r = run("gpudirect-machine.yaml", SMALL);
        assertTrue(r.passed(), failures(r));
        Transfer p2p = r.transfer("p2p").orElseThrow();
        Transfer bounce = r.transfer("bounce").orElseThrow();
        assertEquals(0, p2p.hostBytesWritten(), "peer-to-peer writes no host byte");
        assertEquals(16 * MIB, p2p.peerBytesWritten());
        assertTrue(bounce.hostBytesWritten() >= 16 * MIB && bounce.hostBytesWritten() < 16 * MIB + 4096,
                "the bounce path writes each byte into RAM once, and the GPU its fence words: " + bounce.hostBytesWritten());
        assertTrue(r.text().contains("BUS_ADDR"), "rxe0's map is the BAR's bus address:\n" + r.text());
        assertTrue(r.checks().stream().anyMatch(c -> c.scenario() == Scenario.NO_P2P && c.what().contains("moved to host")));
    }

    /** With {@code p2pAllowed: true} (p2pdma's host-bridge whitelist) rxe1 maps the object in VRAM through its IOMMU. */
    @Test
    void aWhitelistedHostBridgeKeepsTheObjectInVram() throws Exception {
        GpuDirectReport r = run("gpudirect-hostbridge.yaml", SMALL.only(Scenario.GPUDIRECT, Scenario.NO_P2P));
        assertTrue(r.passed(), failures(r));
        assertTrue(r.text().contains("THRU_HOST_BRIDGE"), r.text());
        assertTrue(r.checks().stream().anyMatch(c -> c.scenario() == Scenario.NO_P2P && c.what().contains("stays in VRAM")));
    }

    @Test
    void aMachineWithoutTheHcasIsEnodevAndLeavesNothing() throws Exception {
        try (Machine m = Machine.boot(machineFile("gpudirect-machine.yaml")); GpuHost gpu = GpuHost.on(m)) {
            SoftRoceHost rxe = SoftRoceHost.on(m);
            rxe.close(); // the RDMA core without devices
            ErrnoException e = assertThrows(ErrnoException.class, () -> GpuDirect.run(m, gpu.core(), rxe.core(), SMALL));
            assertEquals(Errno.ENODEV, e.errno());
            assertTrue(e.getMessage().contains("rxe0"), e.getMessage());
            assertTrue(gpu.devices().getFirst().contexts().isEmpty(), "the GPU context was closed again");
        }
    }

    @Test
    void badSizesAreEinval() {
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> GpuDirectConfig.DEFAULT.withSize(3 * MIB)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> new GpuDirectConfig(16 * MIB, 3000, 4 * MIB, 1, GpuDirectConfig.DEFAULT.scenarios())).errno());
    }
}
