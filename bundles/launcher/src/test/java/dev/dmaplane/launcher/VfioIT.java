package dev.dmaplane.launcher;

import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.osgi.framework.Bundle;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The vfio bundle in a real embedded Felix, where the distribution installs it at boot (it also brings the default
 * machine's NVMe model): its DS component registers vfio-pci, which binds nothing by itself
 * (drivers/vfio/pci/vfio_pci.c has an empty ID table) and binds the copy engine once {@code dmaplane:override} sets
 * its {@code driver_override} (as {@code driverctl set-override} does); stopping the bundle unbinds it again and
 * leaves the device free for the next driver, with nothing pinned.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class VfioIT {
    static final String ENGINE = "0000:01:00.0";
    static final String BSN = "dev.dmaplane.vfio";
    static final String DRIVER = "vfio-pci";

    @TempDir
    Path tmp;
    DmaplaneRuntime rt;
    Threads.Snapshot threads;

    @BeforeEach
    void start() throws Exception {
        threads = Threads.snapshot();
        Path machine = TestMachines.copy(TestMachines.SMALL_GPU, tmp);
        rt = DmaplaneRuntime.start(new DmaplaneRuntime.Config(RuntimeIT.DIST, tmp.resolve("work"), null, false, 100)
                .withMachineFile(machine), RuntimeIT.WAIT);
    }

    @AfterEach
    void stop() throws Exception {
        assertTrue(rt.stop(RuntimeIT.WAIT), "framework stopped in time");
        threads.assertAllNewThreadsEnd(Duration.ofSeconds(5));
    }

    @Test
    void vfioPciBindsByOverrideAndLeavesWithItsBundle() throws Exception {
        DemoKit.await("vfio-pci registered", RuntimeIT.WAIT, () ->
                MachineState.driverNames(rt.status()).contains(DRIVER) ? Optional.of(true) : Optional.empty());
        assertEquals(List.of(), MachineState.boundTo(rt.status(), DRIVER), "no ID table: nothing bound by itself");

        assertTrue(rt.gogo("dmaplane:override " + ENGINE + " " + DRIVER, RuntimeIT.WAIT).contains(DRIVER));
        assertEquals(List.of(ENGINE), MachineState.boundTo(rt.status(), DRIVER));

        Bundle vfio = rt.bundle(BSN).orElseThrow();
        vfio.stop();
        DemoKit.await("vfio-pci gone", RuntimeIT.WAIT, () ->
                !MachineState.driverNames(rt.status()).contains(DRIVER) ? Optional.of(true) : Optional.empty());
        assertEquals(List.of(), MachineState.boundTo(rt.status(), DRIVER));
        assertFalse(rt.gogo("dmaplane:lspci -t", RuntimeIT.WAIT).contains("driver=" + DRIVER));
        assertEquals(0L, rt.pinnedFrames());
    }
}
