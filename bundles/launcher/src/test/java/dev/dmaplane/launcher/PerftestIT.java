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

import static org.junit.jupiter.api.Assertions.assertTrue;

/** The perftest bundle hot-loaded beside Soft-RoCE: {@code dmaplane:perf write_bw ...} runs on the runtime's machine. */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class PerftestIT {
    static final Path JAR = RuntimeIT.DIST.resolve("drivers").resolve("perftest.jar");
    static final Duration WAIT = Duration.ofSeconds(20);

    @TempDir
    Path tmp;
    DmaplaneRuntime rt;

    @BeforeEach
    void start() throws Exception {
        rt = DmaplaneRuntime.start(new DmaplaneRuntime.Config(RuntimeIT.DIST, tmp.resolve("work"), null, false, 100), WAIT);
    }

    @AfterEach
    void stop() throws Exception {
        assertTrue(rt.stop(WAIT), "framework stopped in time");
    }

    @Test
    void perfCommandRunsWriteBwBetweenRxe0AndRxe1() throws Exception {
        Path softroce = DemoKit.deploy(SoftRoceIT.JAR, rt.deployDir());
        Path perf = DemoKit.deploy(JAR, rt.deployDir());
        String out = DemoKit.await("dmaplane:perf output", WAIT, () -> {
            try {
                String s = rt.gogo("dmaplane:perf write_bw -s 4096 -n 20", WAIT);
                return s.contains("#iterations") ? Optional.of(s) : Optional.empty();
            } catch (Exception e) {
                return Optional.empty();
            }
        });
        assertTrue(out.contains("RDMA_Write BW Test") && out.contains("BW average[MB/sec]"), out);
        assertTrue(out.matches("(?s).*\\n 4096 +20 +.*"), out);
        Files.delete(perf);
        Files.delete(softroce);
    }
}
