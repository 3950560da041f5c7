package dev.dmaplane.launcher;

import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.zip.CRC32C;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The crc bundle, model and driver together, deployed into a running runtime in a real embedded Felix: its model
 * service arriving is the CRC engine's hardware arriving (a hot-add, {@code drivers/pci/hotplug/pciehp_pci.c}) and
 * the driver binding it; {@code crc:run} computes a CRC32C (RFC 3720 B.4) through the engine; deleting the jar from
 * deploy/ is a surprise removal ({@code drivers/pci/remove.c}) that leaves the slot absent and nothing mapped.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class CrcIT {
    static final Path JAR = RuntimeIT.DIST.resolve("drivers").resolve("driver-crc.jar");
    static final String CRC = "0000:02:00.0";
    static final String BSN = "dev.dmaplane.driver.crc";
    static final String DRIVER = "crc32c";

    @TempDir
    Path tmp;
    DmaplaneRuntime rt;
    Threads.Snapshot threads;

    @BeforeEach
    void start() throws Exception {
        threads = Threads.snapshot();
        Path machine = TestMachines.copy(TestMachines.SMALL_CRC, tmp);
        rt = DmaplaneRuntime.start(new DmaplaneRuntime.Config(RuntimeIT.DIST, tmp.resolve("work"), null, false, 100)
                .withMachineFile(machine), RuntimeIT.WAIT);
    }

    @AfterEach
    void stop() throws Exception {
        assertTrue(rt.stop(RuntimeIT.WAIT), "framework stopped in time");
        threads.assertAllNewThreadsEnd(Duration.ofSeconds(5));
    }

    @Test
    void deployingTheBundleBringsTheEngineUpAndRemovingItTakesItAway() throws Exception {
        assertEquals(List.of("0000:00:01.0", "0000:00:02.0", "0000:01:00.0"),
                MachineState.deviceNames(rt.status()).stream().sorted().toList(), "the CRC slot is empty");
        assertTrue(rt.gogo("dmaplane:lspci -t", RuntimeIT.WAIT).contains("<absent> " + CRC + " (device model 'crc' is not loaded)"));
        long frames = (Long) rt.status().get("allocatedFrames");

        Path deployed = DemoKit.deploy(JAR, rt.deployDir());
        assertEquals(List.of(CRC), DemoKit.await("crc32c bound", RuntimeIT.WAIT, () -> {
            List<String> b = MachineState.boundTo(rt.status(), DRIVER);
            return b.isEmpty() ? Optional.empty() : Optional.of(b);
        }));
        assertTrue(rt.gogo("dmaplane:lspci -t", RuntimeIT.WAIT).contains("[1da0:0c32] " + CRC + " model=crc driver=crc32c"));
        List<Map<String, Object>> offloads = rt.serviceProperties("(objectClass=dev.dmaplane.driver.crc.CrcOffload)");
        assertEquals(CRC, offloads.getFirst().get("crc.device"));

        int size = 100_000;
        byte[] data = new byte[size];
        for (int i = 0; i < size; i++) {
            data[i] = (byte) (31 * i + 7); // crc:run's pattern
        }
        CRC32C expected = new CRC32C();
        expected.update(data);
        assertEquals(String.format("%s crc32c 0x%08x of %d bytes, matches software", CRC, expected.getValue(), size),
                RuntimeIT.gogoOnceKnown(rt, "crc:run " + size));
        assertEquals(1, rt.status().get("activeDmaMappings"), "the request's buffer is unmapped, the ring stays");

        Files.delete(deployed);
        DemoKit.await("crc gone", RuntimeIT.WAIT, () -> rt.bundle(BSN).isEmpty()
                && !MachineState.deviceNames(rt.status()).contains(CRC) ? Optional.of(true) : Optional.empty());
        assertFalse(MachineState.driverNames(rt.status()).contains(DRIVER));
        assertTrue(rt.gogo("dmaplane:lspci -t", RuntimeIT.WAIT).contains("<absent> " + CRC + " (device model 'crc' was unloaded)"));
        Map<String, Object> s = rt.status();
        assertEquals(0, s.get("activeDmaMappings"), "nothing mapped");
        assertEquals(frames, s.get("allocatedFrames"), "ring and buffers freed");
        assertEquals(0L, rt.pinnedFrames());
        assertTrue(MachineState.reports(rt.dmaDebug(), "LEAK_AT_UNBIND").isEmpty(), "dma-debug found no leak");
    }
}
