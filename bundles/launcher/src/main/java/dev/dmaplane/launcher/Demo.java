package dev.dmaplane.launcher;

import org.osgi.framework.InvalidSyntaxException;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeoutException;
import java.util.function.Supplier;

/**
 * The headline demo on the default machine: boot, show the PCI tree and the IOMMU groups ACS makes, hot-load the
 * dmatest driver through {@code deploy/}, show what the GPU's copy engine did through its IOMMU domain, show the
 * bad DMA (dmatest's use-after-unmap) the IOMMU stopped, delete the driver and check that nothing is left. Every
 * wait is bounded and watches the machine's state; nothing sleeps for a fixed time to let things happen. Exit 0
 * only if every check held.
 */
final class Demo {
    static final String DRIVER_JAR = "driver-dmatest.jar";
    static final String DRIVER_BSN = "dev.dmaplane.driver.dmatest";
    static final String DRIVER_NAME = "dmatest";
    /** The service dmatest publishes per device, matched by class name (the launcher cannot load the class). */
    static final String RESULT_FILTER = "(objectClass=dev.dmaplane.driver.dmatest.DmaTestResult)";
    /** The default machine's GPU, whose BAR0 is the copy engine. */
    static final String GPU = "0000:03:00.0";
    /** What shares the GPU's IOMMU group: the switch's downstream ports lack ACS. */
    static final List<String> GPU_GROUP = List.of("0000:02:00.0", "0000:02:01.0", GPU, "0000:04:00.0");
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
        out.println("dmaplane demo: hot-load a DMA driver into a running machine, check its copy engine byte by byte,");
        out.println("watch the IOMMU stop a bad DMA, then take the driver out and check that nothing is left");
        long t0 = System.nanoTime();
        section(1, "boot: Apache Felix " + DmaplaneRuntime.versions().getProperty("felix.version")
                + " with the runtime bundles of " + config.distDir().resolve("bundle"));
        DmaplaneRuntime rt = DmaplaneRuntime.start(config, DmaplaneRuntime.DEFAULT_START_TIMEOUT);
        boolean stopped = false;
        try {
            note("machine up after %s; %d bundles installed; work directory %s", since(t0),
                    rt.framework().getBundleContext().getBundles().length, config.workDir());
            boot(rt);
            long baseFrames = frames(rt);
            long basePinned = rt.pinnedFrames();
            long baseSeq = (Long) rt.status().get("traceLastSeq");

            Path deployed = hotLoad(rt, driverJar);
            Map<String, Object> result = result(rt);
            long boundFrames = frames(rt);
            copyEngine(rt, result, baseSeq);
            badDma(rt, result);
            hotUnload(rt, deployed, baseSeq, baseFrames, basePinned, boundFrames);

            long t3 = System.nanoTime();
            stopped = rt.stop(Duration.ofSeconds(10));
            section(7, "shutdown: " + (stopped ? "framework stopped in " + since(t3) : "framework did not stop in 10 s"));
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

    /** [1] The machine as lspci and the IOMMU see it. */
    private void boot(DmaplaneRuntime rt) throws Exception {
        shell(rt, "dmaplane:lspci -t");
        shell(rt, "dmaplane:iommu");
        Map<String, Object> iommu = rt.iommu();
        check(MachineState.groupMembers(iommu, GPU).equals(GPU_GROUP),
                "the GPU shares IOMMU group %s with %s: the switch's downstream ports have no ACS, so peer-to-peer "
                        + "traffic between them would never reach the IOMMU", groupId(iommu, GPU),
                GPU_GROUP.stream().filter(d -> !d.equals(GPU)).toList());
        check(MachineState.groupMembers(iommu, "0000:05:00.0").equals(List.of("0000:05:00.0"))
                        && MachineState.groupMembers(iommu, "0000:06:00.0").equals(List.of("0000:06:00.0")),
                "the second HCA and the NVMe sit in groups of their own: their root ports enforce ACS");
        shell(rt, "dmaplane:memory");
    }

    /** [2] Copy the driver into deploy/ and wait for it to bind. */
    private Path hotLoad(DmaplaneRuntime rt, Path driverJar) throws Exception {
        section(2, "hot-load: copy " + DRIVER_JAR + " into " + rt.deployDir() + " (File Install polls every "
                + config.pollMillis() + " ms)");
        long t1 = System.nanoTime();
        Path deployed = deploy(driverJar, rt.deployDir());
        List<String> bound = await("dmatest bound to a device", () -> {
            List<String> b = MachineState.boundTo(rt.status(), DRIVER_NAME);
            return b.isEmpty() ? Optional.empty() : Optional.of(b);
        });
        note("dmatest drives %s, %s after the copy; its probe set up the copy engine and ran the self test", bound, since(t1));
        check(bound.equals(List.of(GPU)), "dmatest bound to the GPU %s only", GPU);
        shell(rt, "dmaplane:drivers");
        return deployed;
    }

    /** The dmatest result service's properties (waited for, bounded). */
    private static Map<String, Object> result(DmaplaneRuntime rt) throws Exception {
        return await("dmatest result service", () -> {
            try {
                return rt.serviceProperties(RESULT_FILTER).stream().filter(p -> GPU.equals(p.get("dmatest.device"))).findFirst();
            } catch (InvalidSyntaxException e) {
                throw new IllegalStateException(e);
            }
        });
    }

    /** [3] The good transfers: descriptors, IOVAs, what the CPU verified, the trace. */
    private void copyEngine(DmaplaneRuntime rt, Map<String, Object> result, long baseSeq) throws Exception {
        Map<String, Object> iommu = rt.iommu();
        String domain = (String) MachineState.group(iommu, GPU).map(g -> g.get("domain")).orElse("?");
        section(3, "what the copy engine did, through IOMMU domain " + domain + " (from dmatest's DmaTestResult service)");
        note("descriptor ring at iova 0x%x (coherent memory, mapped while the driver is bound); the transfers:",
                (Long) result.get("dmatest.ringIova"));
        for (String t : (String[]) result.get("dmatest.transfers")) {
            out.println("    " + t);
        }
        note("dmatest: %s", result.get("dmatest.summary"));
        List<Map<String, Object>> dma = MachineState.events(rt.trace(), baseSeq, GPU, List.of("MAP", "UNMAP"));
        note("the trace holds %d MAP/UNMAP events of %s since the load; the ring and the first copy:", dma.size(), GPU);
        dma.stream().limit(5).forEach(e -> out.println(String.format("    #%d %s addr=0x%x len=%d %s", (Long) e.get("seq"),
                e.get("kind"), (Long) e.get("address"), (Long) e.get("length"), e.get("detail"))));
        shell(rt, "dmaplane:iommu mappings");
        int tests = (Integer) result.get("dmatest.tests");
        check(tests == 6 && (Integer) result.get("dmatest.failures") == 0,
                "%d transfers (4 copies, a fill, a copy after the reset), 0 failures", tests);
        check((Long) result.get("dmatest.bytesCopied") > 0 && (Long) result.get("dmatest.bytesVerified") > 0,
                "%d bytes copied and %d filled by the engine, %d bytes checked by the CPU against dmatest's patterns",
                (Long) result.get("dmatest.bytesCopied"), (Long) result.get("dmatest.bytesFilled"),
                (Long) result.get("dmatest.bytesVerified"));
        long maps = dma.stream().filter(e -> "MAP".equals(e.get("kind"))).count();
        long unmaps = dma.size() - maps;
        check(maps == unmaps + 1, "every streaming mapping was unmapped: %d MAP, %d UNMAP, the ring's mapping stays", maps, unmaps);
        int active = (Integer) rt.status().get("activeDmaMappings");
        check(active == 1 && MachineState.mappedBytes(iommu, domain) == 4096,
                "while bound only the ring is mapped: %d active DMA mapping, %s maps %d bytes", active, domain,
                MachineState.mappedBytes(iommu, domain));
    }

    /** [4] The use-after-unmap: the engine's status, the IOMMU's fault, the untouched page. */
    private void badDma(DmaplaneRuntime rt, Map<String, Object> result) throws Exception {
        long iova = (Long) result.get("dmatest.faultIova");
        section(4, "a bad DMA: dmatest mapped a destination buffer, unmapped it, and still gave the engine a descriptor "
                + "naming its IOVA");
        Arrays.stream((String[]) result.get("dmatest.transfers")).filter(t -> t.contains("stale"))
                .forEach(t -> out.println("    " + t));
        note("dmatest: %s", result.get("dmatest.faultDetail"));
        shell(rt, "dmaplane:iommu faults");
        shell(rt, "dmaplane:dmadebug");
        List<Map<String, Object>> faults = MachineState.faults(rt.iommu()).stream()
                .filter(f -> GPU.equals(f.get("device")) && iova == (Long) f.get("iova")).toList();
        check("PASSED".equals(result.get("dmatest.faultCheck")), "dmatest's fault check passed");
        check("ST_WRITE_FAULT".equals(result.get("dmatest.faultStatus")),
                "the engine halted the descriptor with %s", result.get("dmatest.faultStatus"));
        check(faults.size() == 1 && Boolean.TRUE.equals(faults.getFirst().get("write"))
                        && "not mapped".equals(faults.getFirst().get("reason")),
                "the IOMMU recorded one write fault of %s at iova 0x%x: not mapped", GPU, iova);
        check((Long) result.get("dmatest.faultBytesChanged") == 0,
                "no byte of the page that used to be mapped there changed (every byte compared)");
        check(MachineState.reports(rt.dmaDebug(), "ACCESS_UNMAPPED").size() == 1,
                "dma-debug reported the refused access once (ACCESS_UNMAPPED)");
    }

    /** [5] Delete the jar, wait for the unbind, check that nothing is left. */
    private void hotUnload(DmaplaneRuntime rt, Path deployed, long baseSeq, long baseFrames, long basePinned,
                           long boundFrames) throws Exception {
        section(5, "hot-unload: delete " + deployed);
        long t2 = System.nanoTime();
        Files.delete(deployed);
        await("dmatest unbound and its bundle uninstalled", () ->
                !MachineState.driverNames(rt.status()).contains(DRIVER_NAME) && rt.bundle(DRIVER_BSN).isEmpty()
                        ? Optional.of(true) : Optional.empty());
        note("dmatest gone %s after the delete", since(t2));
        shell(rt, "dmaplane:dmadebug");
        shell(rt, "dmaplane:memory");

        section(6, "checks after the unload");
        Map<String, Object> end = rt.status();
        Map<String, Object> iommu = rt.iommu();
        String domain = (String) MachineState.group(iommu, GPU).map(g -> g.get("domain")).orElse("?");
        List<Map<String, Object>> trace = rt.trace();
        check(MachineState.traced(trace, baseSeq, "BIND", GPU, DRIVER_NAME), "BIND of %s by dmatest traced", GPU);
        check(MachineState.traced(trace, baseSeq, "UNBIND", GPU, DRIVER_NAME), "UNBIND of %s traced: remove ran", GPU);
        check(MachineState.reports(rt.dmaDebug(), "LEAK_AT_UNBIND").isEmpty(),
                "dma-debug found no mapping leaked at unbind");
        check((Integer) end.get("activeDmaMappings") == 0 && MachineState.mappedBytes(iommu, domain) == 0,
                "0 active DMA mappings; %s maps 0 bytes", domain);
        check(boundFrames > baseFrames, "probe held %d frames while bound (ring and buffers)", boundFrames - baseFrames);
        check(frames(rt) == baseFrames, "allocated frames back to %d (now %d)", baseFrames, frames(rt));
        check(rt.pinnedFrames() == basePinned, "pinned frames back to %d (now %d)", basePinned, rt.pinnedFrames());
        check(MachineState.devres(end, GPU) == 0, "no device-managed resource left on %s", GPU);
        check(rt.serviceProperties(RESULT_FILTER).isEmpty(), "the DmaTestResult service is withdrawn");
        check(rt.bundle(DRIVER_BSN).isEmpty(), "bundle %s is uninstalled", DRIVER_BSN);
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

    private static Object groupId(Map<String, Object> iommu, String device) {
        return MachineState.group(iommu, device).map(g -> g.get("id")).orElse("?");
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
