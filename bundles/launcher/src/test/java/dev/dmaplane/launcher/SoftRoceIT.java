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
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

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
        Path deployed = DemoKit.deploy(JAR, rt.deployDir());
        String devs = DemoKit.await("rxe0 and rxe1", WAIT, () -> {
            try {
                String s = rt.gogo("rdma:dev", WAIT);
                return s.contains("rxe0") && s.contains("rxe1") ? Optional.of(s) : Optional.empty();
            } catch (Exception e) {
                return Optional.empty();
            }
        });
        assertTrue(devs.contains("rxe0") && devs.contains("rxe1"), devs);
        // the driver component is also the shell's rxe:carrier command
        assertEquals("rxe1/1 state DOWN netdev eth5", rt.gogo("rxe:carrier rxe1 down", WAIT));
        assertTrue(rt.gogo("rdma:link", WAIT).contains("link rxe1/1 state DOWN"));
        assertEquals("rxe1/1 state ACTIVE netdev eth5", rt.gogo("rxe:carrier rxe1 up", WAIT));
        // and rxe:pcap, which captures what the HCAs send
        Path pcap = tmp.resolve("rxe.pcap");
        assertEquals("capturing to " + pcap, rt.gogo("rxe:pcap " + pcap, WAIT));
        assertEquals("capture off, " + pcap + " closed", rt.gogo("rxe:pcap off", WAIT));
        assertEquals(24, Files.size(pcap), "the libpcap global header, no traffic yet");
        assertTrue(Thread.getAllStackTraces().keySet().stream().anyMatch(t -> t.getName().startsWith("softroce-")),
                "one engine per HCA runs");

        Files.delete(deployed);
        assertDevicesAndEnginesGone();
        assertEquals(0, rt.status().get("activeDmaMappings"));
    }

    /** Waits for {@code rdma:dev} to list nothing, then checks that no engine thread stays. */
    private void assertDevicesAndEnginesGone() throws Exception {
        DemoKit.await("rxe devices gone", WAIT, () -> {
            try {
                return "no RDMA devices".equals(rt.gogo("rdma:dev", WAIT)) ? Optional.of(true) : Optional.empty();
            } catch (Exception e) {
                return Optional.empty();
            }
        });
        assertTrue(Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.getName().startsWith("softroce-")
                && t.isAlive()), "no engine thread stays");
    }

    /**
     * Hot unplug the way an operator does it: the driver bundle leaves the deploy folder while perftest moves data
     * between rxe0 and rxe1. The run fails (its contexts were disassociated: work flushed, DEVICE_FATAL), and
     * nothing stays behind: no device, no engine thread, no DMA mapping, no pinned page.
     */
    @Test
    void removingTheBundleUnderTrafficEndsTheRunAndLeavesNothingBehind() throws Exception {
        long pinnedBefore = rt.pinnedFrames();
        Path deployed = DemoKit.deploy(JAR, rt.deployDir());
        Path perf = DemoKit.deploy(PerftestIT.JAR, rt.deployDir());
        DemoKit.await("dmaplane:perf", WAIT, () -> {
            try {
                return rt.hasService("(osgi.command.function=perf)") && rt.gogo("rdma:dev", WAIT).contains("rxe1")
                        ? Optional.of(true) : Optional.empty();
            } catch (Exception e) {
                return Optional.empty();
            }
        });
        CompletableFuture<String> run = CompletableFuture.supplyAsync(() -> {
            try {
                return rt.gogo("dmaplane:perf write_bw -s 65536 -D 30", Duration.ofSeconds(60));
            } catch (Exception e) {
                return "failed: " + e.getMessage();
            }
        });
        DemoKit.await("traffic", WAIT, () -> {
            try {
                String stat = rt.gogo("rdma:statistic", WAIT);
                Matcher m = Pattern.compile("link rxe0/1 sent_pkts (\\d+)").matcher(stat);
                return m.find() && Long.parseLong(m.group(1)) > 1000 ? Optional.of(true) : Optional.empty();
            } catch (Exception e) {
                return Optional.empty();
            }
        });
        assertTrue(rt.pinnedFrames() > pinnedBefore, "perftest's regions are pinned while it runs");

        Files.delete(deployed); // the driver bundle goes away under traffic

        String out = run.get(WAIT.toSeconds(), TimeUnit.SECONDS);
        assertTrue(out.startsWith("failed: ") && out.contains("EIO"), out);
        assertDevicesAndEnginesGone();
        assertEquals(0, rt.status().get("activeDmaMappings"));
        assertEquals(pinnedBefore, rt.pinnedFrames(), "every page the regions pinned is unpinned");
        Files.delete(perf);
    }
}
