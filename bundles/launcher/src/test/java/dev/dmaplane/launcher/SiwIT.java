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
 * The siw driver bundle hot-loaded into the runtime ({@code modprobe siw}): it binds nothing by itself on the
 * default machine, whose Ethernet functions are RoCE HCAs; {@code dmaplane:override 0000:04:00.0 siw} attaches it
 * to one of them ({@code rdma link add siw0 type siw netdev eth4}) and siw0 appears, an iWARP device with its
 * {@code siw:pcap} command; removing the bundle unregisters it and stops its threads.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class SiwIT {
    static final Path JAR = RuntimeIT.DIST.resolve("drivers").resolve("driver-siw.jar");
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
    void theBundleAttachesToAnEthernetFunctionByOverrideAndLeavesWithItsThreads() throws Exception {
        Path deployed = DemoKit.deploy(JAR, rt.deployDir());
        DemoKit.await("siw:pcap", WAIT, () -> {
            try {
                return rt.hasService("(&(osgi.command.scope=siw)(osgi.command.function=pcap))")
                        ? Optional.of(true) : Optional.empty();
            } catch (Exception e) {
                return Optional.empty();
            }
        });
        assertEquals("no RDMA devices", rt.gogo("rdma:dev", WAIT), "siw binds no RoCE HCA by itself");
        String bound = rt.gogo("dmaplane:override 0000:04:00.0 siw", WAIT);
        assertTrue(bound.contains("siw"), bound);
        String devs = DemoKit.await("siw0", WAIT, () -> {
            try {
                String s = rt.gogo("rdma:dev", WAIT);
                return s.contains("siw0") ? Optional.of(s) : Optional.empty();
            } catch (Exception e) {
                return Optional.empty();
            }
        });
        assertTrue(devs.contains("siw0"), devs);
        Path pcap = tmp.resolve("siw.pcap");
        assertEquals("capturing to " + pcap, rt.gogo("siw:pcap " + pcap, WAIT));
        assertEquals("capture off, " + pcap + " closed", rt.gogo("siw:pcap off", WAIT));
        assertEquals(24, Files.size(pcap), "the libpcap global header, no traffic yet");
        assertTrue(Thread.getAllStackTraces().keySet().stream().anyMatch(t -> t.getName().equals("siw-tx-siw0")),
                "the device's TX thread runs");

        Files.delete(deployed);
        DemoKit.await("siw0 gone", WAIT, () -> {
            try {
                return "no RDMA devices".equals(rt.gogo("rdma:dev", WAIT)) ? Optional.of(true) : Optional.empty();
            } catch (Exception e) {
                return Optional.empty();
            }
        });
        assertTrue(Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.getName().startsWith("siw-")
                && t.isAlive()), "no siw thread stays");
    }
}
