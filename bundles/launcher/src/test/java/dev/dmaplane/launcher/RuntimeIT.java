package dev.dmaplane.launcher;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.osgi.framework.Bundle;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The runtime in a real embedded Felix, booted from the distribution exactly as {@code dmaplane} boots it: File
 * Install on a temporary deploy directory, the dmatest driver bundle hot-loaded and removed, Gogo commands. The
 * bundles are not on this test's class path; the test sees the machine only through the JDK-typed query service.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class RuntimeIT {
    static final Path DIST = Path.of(System.getProperty("dmaplane.dist", "target/dist"));
    static final Path DRIVER = DIST.resolve("drivers").resolve(Demo.DRIVER_JAR);
    static final Duration WAIT = Duration.ofSeconds(10);

    @TempDir
    Path tmp;
    DmaplaneRuntime rt;
    Threads.Snapshot threads;

    @BeforeEach
    void start() throws Exception {
        threads = Threads.snapshot();
        rt = DmaplaneRuntime.start(new DmaplaneRuntime.Config(DIST, tmp.resolve("work"), null, false, 100), WAIT);
    }

    @AfterEach
    void stop() throws Exception {
        assertTrue(rt.stop(WAIT), "framework stopped in time");
        threads.assertAllNewThreadsEnd(Duration.ofSeconds(5));
    }

    @Test
    void bundlesStayOffTheTestClassPath() {
        assertThrows(ClassNotFoundException.class, () -> Class.forName("dev.dmaplane.machine.Machine"));
        assertThrows(ClassNotFoundException.class, () -> Class.forName("org.apache.felix.scr.impl.Activator"));
    }

    @Test
    void machineServiceIsRegisteredAndEveryBundleIsActive() throws Exception {
        assertTrue(rt.hasService("(objectClass=dev.dmaplane.machine.Machine)"));
        for (Bundle b : rt.framework().getBundleContext().getBundles()) {
            assertEquals(Bundle.ACTIVE, b.getState(), b.getSymbolicName() + " is active");
        }
        assertTrue(rt.bundle(DmaplaneRuntime.GOGO_SHELL_BSN).isEmpty(), "no shell reading the terminal in a test");
        assertEquals(0L, rt.status().get("allocatedFrames"));
    }

    @Test
    void hotLoadedDriverBindsAndDeletingItRunsRemove() throws Exception {
        long baseFrames = frames();
        long baseSeq = (Long) rt.status().get("traceLastSeq");

        Path deployed = Demo.deploy(DRIVER, rt.deployDir());
        List<String> bound = Demo.await("dmatest bound", WAIT, () -> {
            List<String> b = Demo.boundTo(rt.status(), Demo.DRIVER_NAME);
            return b.isEmpty() ? Optional.empty() : Optional.of(b);
        });
        assertEquals(List.of("0000:01:00.0"), bound, "dmatest claims the 3D controller only");
        assertTrue(frames() > baseFrames, "probe allocated its buffers");
        assertEquals(1, Demo.devres(rt.status(), "0000:01:00.0"), "the destination buffer is device-managed");
        assertTrue(Demo.traced(rt.trace(), baseSeq, "BIND", "0000:01:00.0"));

        Files.delete(deployed);
        Demo.await("dmatest gone", WAIT, () -> !Demo.driverNames(rt.status()).contains(Demo.DRIVER_NAME)
                && rt.bundle(Demo.DRIVER_BSN).isEmpty() ? Optional.of(true) : Optional.empty());
        assertTrue(Demo.traced(rt.trace(), baseSeq, "UNBIND", "0000:01:00.0"), "remove ran: UNBIND traced");
        assertEquals(baseFrames, frames(), "everything the driver allocated is freed");
        assertEquals(0L, rt.pinnedFrames(), "nothing pinned");
        assertEquals(0, Demo.devres(rt.status(), "0000:01:00.0"));
    }

    @Test
    void gogoDriversCommandPrintsTheBoundDriver() throws Exception {
        assertEquals("no drivers registered", rt.gogo("dmaplane:drivers", WAIT));
        Demo.deploy(DRIVER, rt.deployDir());
        Demo.await("dmatest bound", WAIT, () -> Demo.boundTo(rt.status(), Demo.DRIVER_NAME).isEmpty()
                ? Optional.empty() : Optional.of(true));

        String drivers = rt.gogo("dmaplane:drivers", WAIT);
        assertTrue(drivers.startsWith("dmatest  [dev.dmaplane.driver.dmatest "), drivers);
        assertTrue(drivers.contains("matches: pci class 030200/ffff00"), drivers);
        assertTrue(drivers.contains("bound:   0000:01:00.0"), drivers);

        String devices = rt.gogo("dmaplane:devices", WAIT);
        assertTrue(devices.lines().anyMatch(l -> l.startsWith("0000:01:00.0") && l.contains("dmatest")), devices);
        assertTrue(rt.gogo("dmaplane:trace 1 BIND", WAIT).matches("#\\d+ BIND 0000:01:00.0 dmatest"));
        assertTrue(rt.gogo("dmaplane:memory", WAIT).contains("allocated  8 frames (32 KiB)"));
        assertTrue(rt.gogo("lb", WAIT).contains("dmaplane dmatest driver"), "Gogo's own commands work too");
        Gogo.CommandException e = assertThrows(Gogo.CommandException.class, () -> rt.gogo("dmaplane:trace NOPE", WAIT));
        assertTrue(e.getMessage().contains("unknown trace kind 'NOPE'"), e.getMessage());
    }

    @Test
    void stoppingTheFrameworkWithTheDriverLoadedRunsItsRemove() throws Exception {
        Demo.deploy(DRIVER, rt.deployDir());
        Demo.await("dmatest bound", WAIT, () -> Demo.boundTo(rt.status(), Demo.DRIVER_NAME).isEmpty()
                ? Optional.empty() : Optional.of(true));
        Bundle driver = rt.bundle(Demo.DRIVER_BSN).orElseThrow();
        driver.stop();
        Map<String, Object> s = rt.status();
        assertFalse(Demo.driverNames(s).contains(Demo.DRIVER_NAME), "stopping the bundle unregisters the driver");
        assertEquals(0L, s.get("allocatedFrames"));
        driver.start();
        assertEquals(List.of("0000:01:00.0"), Demo.boundTo(rt.status(), Demo.DRIVER_NAME), "restart binds again");
        // the framework stop in @AfterEach unbinds it a last time while the machine is still up
    }

    private long frames() {
        return (Long) rt.status().get("allocatedFrames");
    }
}
