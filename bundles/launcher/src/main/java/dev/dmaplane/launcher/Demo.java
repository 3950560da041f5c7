package dev.dmaplane.launcher;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeoutException;
import java.util.function.Supplier;

/**
 * The headline demo, for now (until the GPU interop demo lands): boot the runtime, hot-load the dmatest driver
 * bundle through {@code deploy/}, show what it did, delete it, and check that its remove ran and nothing is left.
 * Every wait is bounded and watches the machine's state; nothing sleeps for a fixed time to let things happen.
 */
final class Demo {
    static final String DRIVER_JAR = "driver-dmatest.jar";
    static final String DRIVER_BSN = "dev.dmaplane.driver.dmatest";
    static final String DRIVER_NAME = "dmatest";
    static final Duration WAIT = Duration.ofSeconds(10);

    private final DmaplaneRuntime.Config config;
    private final PrintStream out;
    private final List<String> failures = new ArrayList<>();

    Demo(DmaplaneRuntime.Config config, PrintStream out) {
        this.config = config;
        this.out = out;
    }

    /** Runs the demo; returns the exit code (0 when every check passed). */
    int run() throws Exception {
        Path driverJar = config.distDir().resolve("drivers").resolve(DRIVER_JAR);
        if (!Files.isRegularFile(driverJar)) {
            out.println("dmaplane demo: the driver bundle " + driverJar + " is missing (build with mvn install)");
            return 1;
        }
        out.println("dmaplane demo: hot-load a driver bundle into a running machine, then take it out again");
        long t0 = System.nanoTime();
        section(1, "boot: Apache Felix " + DmaplaneRuntime.versions().getProperty("felix.version")
                + " with the runtime bundles of " + config.distDir().resolve("bundle"));
        DmaplaneRuntime rt = DmaplaneRuntime.start(config, DmaplaneRuntime.DEFAULT_START_TIMEOUT);
        boolean stopped = false;
        try {
            note("machine up after %s; %d bundles installed; work directory %s", since(t0),
                    rt.framework().getBundleContext().getBundles().length, config.workDir());
            shell(rt, "dmaplane:devices");
            shell(rt, "dmaplane:memory");
            long baseFrames = frames(rt);
            long basePinned = rt.pinnedFrames();
            long baseSeq = (Long) rt.status().get("traceLastSeq");

            section(2, "hot-load: copy " + DRIVER_JAR + " into " + rt.deployDir() + " (File Install polls every "
                    + config.pollMillis() + " ms)");
            long t1 = System.nanoTime();
            Path deployed = deploy(driverJar, rt.deployDir());
            List<String> bound = await("dmatest bound to a device", () -> {
                List<String> b = boundTo(rt.status(), DRIVER_NAME);
                return b.isEmpty() ? Optional.empty() : Optional.of(b);
            });
            note("dmatest drives %s, %s after the copy", bound, since(t1));
            shell(rt, "dmaplane:drivers");
            shell(rt, "dmaplane:devices");
            shell(rt, "dmaplane:memory");
            shell(rt, "dmaplane:trace 4");
            long boundFrames = frames(rt);

            section(3, "hot-unload: delete " + deployed);
            long t2 = System.nanoTime();
            Files.delete(deployed);
            await("dmatest unbound and its bundle uninstalled", () ->
                    !driverNames(rt.status()).contains(DRIVER_NAME) && rt.bundle(DRIVER_BSN).isEmpty()
                            ? Optional.of(true) : Optional.empty());
            note("dmatest gone %s after the delete", since(t2));
            shell(rt, "dmaplane:trace 4");
            shell(rt, "dmaplane:memory");

            section(4, "checks");
            Map<String, Object> end = rt.status();
            List<Map<String, Object>> trace = rt.trace();
            check(boundFrames > baseFrames, "probe allocated host pages: %d frames held while bound (%d before)",
                    boundFrames - baseFrames, baseFrames);
            check(frames(rt) == baseFrames, "allocated frames back to %d after unload (now %d)", baseFrames, frames(rt));
            check(rt.pinnedFrames() == basePinned, "pinned frames back to %d (now %d)", basePinned, rt.pinnedFrames());
            for (String dev : bound) {
                check(traced(trace, baseSeq, "BIND", dev), "BIND of %s by dmatest traced", dev);
                check(traced(trace, baseSeq, "UNBIND", dev), "UNBIND of %s by dmatest traced: remove and devres ran", dev);
                check(devres(end, dev) == 0, "no device-managed resource left on %s", dev);
            }
            check(!driverNames(end).contains(DRIVER_NAME), "dmatest is no longer registered with the driver core");
            check(rt.bundle(DRIVER_BSN).isEmpty(), "bundle %s is uninstalled", DRIVER_BSN);

            long t3 = System.nanoTime();
            stopped = rt.stop(Duration.ofSeconds(10));
            section(5, "shutdown: " + (stopped ? "framework stopped in " + since(t3) : "framework did not stop in 10 s"));
            check(stopped, "framework stopped");
        } catch (TimeoutException e) {
            failures.add(e.getMessage());
            out.println("  FAILED: " + e.getMessage());
        } finally {
            if (!stopped) {
                rt.stop(Duration.ofSeconds(10));
            }
        }
        out.println();
        if (failures.isEmpty()) {
            out.println("demo passed");
            return 0;
        }
        out.println("demo FAILED: " + failures.size() + " check(s): " + String.join("; ", failures));
        return 1;
    }

    /** Copies the jar into deploy/ atomically, so File Install never sees half a file. */
    static Path deploy(Path jar, Path deployDir) throws IOException {
        Path staging = Files.createTempFile(deployDir.getParent(), "deploy-", ".jar.part");
        Files.copy(jar, staging, StandardCopyOption.REPLACE_EXISTING);
        return Files.move(staging, deployDir.resolve(jar.getFileName()), StandardCopyOption.ATOMIC_MOVE);
    }

    /** Polls {@code probe} until it yields a value, for at most {@link #WAIT}. */
    static <T> T await(String what, Supplier<Optional<T>> probe) throws TimeoutException, InterruptedException {
        return await(what, WAIT, probe);
    }

    static <T> T await(String what, Duration timeout, Supplier<Optional<T>> probe) throws TimeoutException, InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            Optional<T> v = probe.get();
            if (v.isPresent()) {
                return v.get();
            }
            if (System.nanoTime() - deadline >= 0) {
                throw new TimeoutException(what + ": not within " + timeout.toSeconds() + " s");
            }
            Thread.sleep(20); // polling period of a bounded wait
        }
    }

    @SuppressWarnings("unchecked")
    static List<String> boundTo(Map<String, Object> status, String driver) {
        for (Map<String, Object> d : (List<Map<String, Object>>) status.get("drivers")) {
            if (driver.equals(d.get("name"))) {
                return (List<String>) d.get("bound");
            }
        }
        return List.of();
    }

    @SuppressWarnings("unchecked")
    static List<String> driverNames(Map<String, Object> status) {
        return ((List<Map<String, Object>>) status.get("drivers")).stream().map(d -> (String) d.get("name")).toList();
    }

    @SuppressWarnings("unchecked")
    static int devres(Map<String, Object> status, String device) {
        for (Map<String, Object> d : (List<Map<String, Object>>) status.get("devices")) {
            if (device.equals(d.get("name"))) {
                return (Integer) d.get("devres");
            }
        }
        return 0;
    }

    static boolean traced(List<Map<String, Object>> trace, long afterSeq, String kind, String device) {
        return trace.stream().anyMatch(e -> (Long) e.get("seq") > afterSeq && kind.equals(e.get("kind"))
                && device.equals(e.get("device")) && DRIVER_NAME.equals(e.get("detail")));
    }

    private static long frames(DmaplaneRuntime rt) {
        return (Long) rt.status().get("allocatedFrames");
    }

    private void shell(DmaplaneRuntime rt, String line) throws Exception {
        out.println("  g! " + line);
        for (String l : rt.gogo(line, WAIT).split("\n", -1)) {
            out.println("     " + l);
        }
    }

    private void section(int n, String title) {
        out.println();
        out.println("[" + n + "] " + title);
    }

    private void note(String fmt, Object... args) {
        out.println("  " + String.format(fmt, args));
    }

    private void check(boolean ok, String fmt, Object... args) {
        String what = String.format(fmt, args);
        out.println("  " + (ok ? "ok    " : "FAILED") + " " + what);
        if (!ok) {
            failures.add(what);
        }
    }

    private static String since(long t0) {
        return String.format("%.2f s", (System.nanoTime() - t0) / 1e9);
    }
}
