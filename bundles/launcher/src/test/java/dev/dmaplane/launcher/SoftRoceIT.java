package dev.dmaplane.launcher;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The Soft-RoCE driver bundle hot-loaded into the runtime: its DS component finds the RdmaCore service, binds both
 * HCA functions and registers rxe0 and rxe1; removing the bundle unbinds them and stops the engine threads.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class SoftRoceIT {
    static final Path JAR = RuntimeIT.DIST.resolve("drivers").resolve("driver-softroce.jar");
    static final Duration WAIT = Duration.ofSeconds(10);

    @TempDir
    Path tmp;
    DmaplaneRuntime rt;
    Threads.Snapshot threads;

    @BeforeEach
    void start() throws Exception {
        threads = Threads.snapshot();
        rt = DmaplaneRuntime.start(new DmaplaneRuntime.Config(RuntimeIT.DIST, tmp.resolve("work"), null, false, 100), WAIT);
    }

    @AfterEach
    void stop() throws Exception {
        assertTrue(rt.stop(WAIT), "framework stopped in time");
        threads.assertAllNewThreadsEnd(Duration.ofSeconds(5));
    }

    @Test
    void deployingTheBundleRegistersRxeDevicesAndRemovingItUnregistersThem() throws Exception {
        assertEquals("no RDMA devices", rt.gogo("rdma:dev", WAIT));
        Path deployed = Demo.deploy(JAR, rt.deployDir());
        String devs = Demo.await("rxe0 and rxe1", WAIT, () -> {
            try {
                String s = rt.gogo("rdma:dev", WAIT);
                return s.contains("rxe0") && s.contains("rxe1") ? Optional.of(s) : Optional.empty();
            } catch (Exception e) {
                return Optional.empty();
            }
        });
        assertTrue(devs.contains("rxe0") && devs.contains("rxe1"), devs);
        assertTrue(Thread.getAllStackTraces().keySet().stream().anyMatch(t -> t.getName().startsWith("softroce-")),
                "one engine per HCA runs");

        Files.delete(deployed);
        Demo.await("rxe devices gone", WAIT, () -> {
            try {
                return "no RDMA devices".equals(rt.gogo("rdma:dev", WAIT)) ? Optional.of(true) : Optional.empty();
            } catch (Exception e) {
                return Optional.empty();
            }
        });
        assertTrue(Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.getName().startsWith("softroce-")
                && t.isAlive()), "no engine thread stays");
        assertEquals(0, rt.status().get("activeDmaMappings"));
    }
}
