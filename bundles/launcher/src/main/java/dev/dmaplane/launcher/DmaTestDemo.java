package dev.dmaplane.launcher;

import org.osgi.framework.InvalidSyntaxException;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeoutException;

/**
 * The dmatest demo ({@code dmaplane demo dmatest}) on the default machine: boot, show the PCI tree, hot-load the GPU bundle (its device model and
 * driver; the driver offers a copy engine as a dmaengine channel on an auxiliary device) and show the IOMMU groups
 * ACS makes, hot-load the dmatest client through {@code deploy/}, show what the channel did through the GPU's IOMMU
 * domain, show the bad DMA (dmatest's use-after-unmap) the IOMMU stopped, delete dmatest, then the GPU bundle, and
 * check that nothing is left. Every
 * wait is bounded and watches the machine's state; nothing sleeps for a fixed time to let things happen. Exit 0
 * only if every check held.
 */
final class DmaTestDemo {
    static final String GPU_JAR = "driver-gpu.jar";
    static final String GPU_BSN = "dev.dmaplane.driver.gpu";
    static final String GPU_DRIVER_NAME = "gpu";
    /** The auxiliary device the GPU driver publishes with its dmaengine channel, what dmatest binds to. */
    static final String AUX = "gpu.dma.0";
    static final String DRIVER_JAR = "driver-dmatest.jar";
    static final String DRIVER_BSN = "dev.dmaplane.driver.dmatest";
    static final String DRIVER_NAME = "dmatest";
    /** The service dmatest publishes per device, matched by class name (the launcher cannot load the class). */
    static final String RESULT_FILTER = "(objectClass=dev.dmaplane.driver.dmatest.DmaTestResult)";
    /** The default machine's GPU ({@code model: gpu}), whose driver offers the dmaengine channel. */
    static final String GPU = "0000:03:00.0";
    /** What shares the GPU's IOMMU group: the switch's downstream ports lack ACS. */
    static final List<String> GPU_GROUP = List.of("0000:02:00.0", "0000:02:01.0", GPU, "0000:04:00.0");
    static final Duration WAIT = DemoKit.WAIT;

    private final DmaplaneRuntime.Config config;
    private final PrintStream out;
    private final DemoKit kit;

    DmaTestDemo(DmaplaneRuntime.Config config, PrintStream out) {
        this.config = config;
        this.out = out;
        this.kit = new DemoKit(out);
    }

    /** Runs the demo; returns the exit code (0 when every check passed). */
    int run() throws Exception {
        Path gpuJar = config.distDir().resolve("drivers").resolve(GPU_JAR);
        Path driverJar = config.distDir().resolve("drivers").resolve(DRIVER_JAR);
        for (Path jar : List.of(gpuJar, driverJar)) {
            if (!Files.isRegularFile(jar)) {
                out.println("dmaplane demo: the driver bundle " + jar + " is missing (build with mvn install)");
                return 1;
            }
        }
        out.println("dmaplane demo: hot-load the GPU and a DMA client into a running machine, check the GPU's copy engine");
        out.println("byte by byte, watch the IOMMU stop a bad DMA, then take both out and check that nothing is left");
        long t0 = System.nanoTime();
        section(1, "boot: Apache Felix " + DmaplaneRuntime.versions().getProperty("felix.version")
                + " with the runtime bundles of " + config.distDir().resolve("bundle"));
        DmaplaneRuntime rt = DmaplaneRuntime.start(config, DmaplaneRuntime.DEFAULT_START_TIMEOUT);
        boolean stopped = false;
        try {
            note("machine up after %s; %d bundles installed; work directory %s", DemoKit.since(t0),
                    rt.framework().getBundleContext().getBundles().length, config.workDir());
            shell(rt, "dmaplane:lspci -t");
            shell(rt, "dmaplane:memory");
            long bootFrames = frames(rt);
            long bootPinned = rt.pinnedFrames();
            long bootSeq = (Long) rt.status().get("traceLastSeq");
            Path gpuDeployed = loadGpu(rt, gpuJar);
            long baseFrames = frames(rt);
            long basePinned = rt.pinnedFrames();
            long baseSeq = (Long) rt.status().get("traceLastSeq");
            Baseline base = new Baseline(baseFrames, basePinned, (Integer) rt.status().get("activeDmaMappings"),
                    MachineState.mappedBytes(rt.iommu(), gpuDomain(rt)));

            Path deployed = hotLoad(rt, driverJar);
            Map<String, Object> result = result(rt);
            long boundFrames = frames(rt);
            copyEngine(rt, result, baseSeq, base);
            badDma(rt, result);
            hotUnload(rt, deployed, baseSeq, base, boundFrames);
            unloadGpu(rt, gpuDeployed, bootSeq, bootFrames, bootPinned);

            long t3 = System.nanoTime();
            stopped = rt.stop(Duration.ofSeconds(10));
            section(9, "shutdown: " + (stopped ? "framework stopped in " + DemoKit.since(t3) : "framework did not stop in 10 s"));
            check(stopped, "framework stopped");
        } catch (TimeoutException e) {
            kit.failed(e.getMessage());
        } finally {
            if (!stopped) {
                rt.stop(Duration.ofSeconds(10));
            }
        }
        return kit.verdict();
    }

    /** What the machine held with the GPU driver bound and before dmatest came. */
    private record Baseline(long frames, long pinned, int activeMappings, long mappedBytes) {
    }

    /** [2] Copy the GPU bundle into deploy/: its model makes the GPU appear, its driver binds and offers a channel. */
    private Path loadGpu(DmaplaneRuntime rt, Path gpuJar) throws Exception {
        section(2, "hot-load the GPU: copy " + GPU_JAR + " into " + rt.deployDir() + " (its device model and its driver)");
        long t0 = System.nanoTime();
        Path deployed = DemoKit.deploy(gpuJar, rt.deployDir());
        List<String> bound = DemoKit.await("the GPU driver bound", () -> {
            List<String> b = MachineState.boundTo(rt.status(), GPU_DRIVER_NAME);
            return b.isEmpty() ? Optional.empty() : Optional.of(b);
        });
        note("the gpu model realized %s and the GPU driver bound it %s after the copy: rings, MSI-X vectors, GPU VMs,"
                + " and its copy engine ce1 offered as a dmaengine channel on auxiliary device %s", GPU, DemoKit.since(t0), AUX);
        check(bound.equals(List.of(GPU)), "the GPU driver bound %s only", GPU);
        shell(rt, "dmaplane:iommu");
        Map<String, Object> iommu = rt.iommu();
        check(MachineState.groupMembers(iommu, GPU).equals(GPU_GROUP),
                "the GPU shares IOMMU group %s with %s: the switch's downstream ports have no ACS, so peer-to-peer "
                        + "traffic between them would never reach the IOMMU", groupId(iommu, GPU),
                GPU_GROUP.stream().filter(d -> !d.equals(GPU)).toList());
        check(MachineState.groupMembers(iommu, "0000:05:00.0").equals(List.of("0000:05:00.0"))
                        && MachineState.groupMembers(iommu, "0000:06:00.0").equals(List.of("0000:06:00.0")),
                "the second HCA and the NVMe sit in groups of their own: their root ports enforce ACS");
        return deployed;
    }

    /** [3] Copy the dmatest client into deploy/ and wait for it to bind to the GPU driver's channel. */
    private Path hotLoad(DmaplaneRuntime rt, Path driverJar) throws Exception {
        section(3, "hot-load dmatest: copy " + DRIVER_JAR + " into " + rt.deployDir() + " (File Install polls every "
                + config.pollMillis() + " ms)");
        long t1 = System.nanoTime();
        Path deployed = DemoKit.deploy(driverJar, rt.deployDir());
        List<String> bound = DemoKit.await("dmatest bound to a device", () -> {
            List<String> b = MachineState.boundTo(rt.status(), DRIVER_NAME);
            return b.isEmpty() ? Optional.empty() : Optional.of(b);
        });
        note("dmatest drives %s, %s after the copy; its probe took the channel and ran the self test through it",
                bound, DemoKit.since(t1));
        check(bound.equals(List.of(AUX)), "dmatest bound to the GPU driver's channel %s only", AUX);
        shell(rt, "dmaplane:drivers");
        return deployed;
    }

    /** The dmatest result service's properties (waited for, bounded). */
    private static Map<String, Object> result(DmaplaneRuntime rt) throws Exception {
        return DemoKit.await("dmatest result service", () -> {
            try {
                return rt.serviceProperties(RESULT_FILTER).stream().filter(p -> GPU.equals(p.get("dmatest.device"))).findFirst();
            } catch (InvalidSyntaxException e) {
                throw new IllegalStateException(e);
            }
        });
    }

    /** [4] The good transfers: IOVAs, what the CPU verified, the trace. */
    private void copyEngine(DmaplaneRuntime rt, Map<String, Object> result, long baseSeq, Baseline base) throws Exception {
        Map<String, Object> iommu = rt.iommu();
        String domain = gpuDomain(rt);
        section(4, "what the GPU's copy engine did for dmatest, through IOMMU domain " + domain
                + " (from dmatest's DmaTestResult service)");
        note("each transaction: dmatest maps its buffers for %s, prepares, submits and issues it on the channel, the GPU"
                + " driver runs it as a job on ce1 and calls back; the transfers:", GPU);
        for (String t : (String[]) result.get("dmatest.transfers")) {
            out.println("    " + t);
        }
        note("dmatest: %s", result.get("dmatest.summary"));
        List<Map<String, Object>> dma = MachineState.events(rt.trace(), baseSeq, GPU, List.of("MAP", "UNMAP"));
        note("the trace holds %d MAP/UNMAP events of %s since dmatest's load; the first copies:", dma.size(), GPU);
        dma.stream().limit(5).forEach(e -> out.println(String.format("    #%d %s addr=0x%x len=%d %s", (Long) e.get("seq"),
                e.get("kind"), (Long) e.get("address"), (Long) e.get("length"), e.get("detail"))));
        shell(rt, "dmaplane:iommu mappings");
        int tests = (Integer) result.get("dmatest.tests");
        check(tests == 6 && (Integer) result.get("dmatest.failures") == 0,
                "%d transfers (4 copies, a fill, a copy after the fault), 0 failures", tests);
        check((Long) result.get("dmatest.bytesCopied") > 0 && (Long) result.get("dmatest.bytesVerified") > 0,
                "%d bytes copied and %d filled by the copy engine, %d bytes checked by the CPU against dmatest's patterns",
                (Long) result.get("dmatest.bytesCopied"), (Long) result.get("dmatest.bytesFilled"),
                (Long) result.get("dmatest.bytesVerified"));
        long maps = dma.stream().filter(e -> "MAP".equals(e.get("kind"))).count();
        long unmaps = dma.size() - maps;
        check(maps == unmaps, "every streaming mapping was unmapped: %d MAP, %d UNMAP", maps, unmaps);
        int active = (Integer) rt.status().get("activeDmaMappings");
        check(active == base.activeMappings() && MachineState.mappedBytes(iommu, domain) == base.mappedBytes(),
                "while bound dmatest keeps nothing mapped: %d active DMA mappings and %s maps %d bytes, the GPU "
                        + "driver's own", active, domain, MachineState.mappedBytes(iommu, domain));
    }

    /** [5] The use-after-unmap: the channel's result, the IOMMU's fault, the untouched page. */
    private void badDma(DmaplaneRuntime rt, Map<String, Object> result) throws Exception {
        long iova = (Long) result.get("dmatest.faultIova");
        section(5, "a bad DMA: dmatest mapped a destination buffer, unmapped it, and still gave the channel a copy "
                + "naming its IOVA");
        Arrays.stream((String[]) result.get("dmatest.transfers")).filter(t -> t.contains("stale"))
                .forEach(t -> out.println("    " + t));
        note("dmatest: %s", result.get("dmatest.faultDetail"));
        shell(rt, "dmaplane:iommu faults");
        shell(rt, "dmaplane:dmadebug");
        List<Map<String, Object>> faults = MachineState.faults(rt.iommu()).stream()
                .filter(f -> GPU.equals(f.get("device")) && iova == (Long) f.get("iova")).toList();
        check("PASSED".equals(result.get("dmatest.faultCheck")), "dmatest's fault check passed");
        check("WRITE_FAILED".equals(result.get("dmatest.faultStatus")),
                "the channel ended the copy %s (the GPU driver recovered its engine)", result.get("dmatest.faultStatus"));
        check(faults.size() == 1 && Boolean.TRUE.equals(faults.getFirst().get("write"))
                        && "not mapped".equals(faults.getFirst().get("reason")),
                "the IOMMU recorded one write fault of %s at iova 0x%x: not mapped", GPU, iova);
        check((Long) result.get("dmatest.faultBytesChanged") == 0,
                "no byte of the page that used to be mapped there changed (every byte compared)");
        check(MachineState.reports(rt.dmaDebug(), "ACCESS_UNMAPPED").size() == 1,
                "dma-debug reported the refused access once (ACCESS_UNMAPPED)");
    }

    /** [6] Delete dmatest's jar, wait for the unbind, check that dmatest left nothing. */
    private void hotUnload(DmaplaneRuntime rt, Path deployed, long baseSeq, Baseline base, long boundFrames)
            throws Exception {
        section(6, "hot-unload dmatest: delete " + deployed);
        long t2 = System.nanoTime();
        Files.delete(deployed);
        DemoKit.await("dmatest unbound and its bundle uninstalled", () ->
                !MachineState.driverNames(rt.status()).contains(DRIVER_NAME) && rt.bundle(DRIVER_BSN).isEmpty()
                        ? Optional.of(true) : Optional.empty());
        note("dmatest gone %s after the delete; the GPU driver stays bound", DemoKit.since(t2));
        shell(rt, "dmaplane:dmadebug");
        Map<String, Object> end = rt.status();
        String domain = gpuDomain(rt);
        List<Map<String, Object>> trace = rt.trace();
        check(MachineState.traced(trace, baseSeq, "BIND", AUX, DRIVER_NAME), "BIND of %s by dmatest traced", AUX);
        check(MachineState.traced(trace, baseSeq, "UNBIND", AUX, DRIVER_NAME), "UNBIND of %s traced: remove ran", AUX);
        check(MachineState.reports(rt.dmaDebug(), "LEAK_AT_UNBIND").isEmpty(),
                "dma-debug found no mapping leaked at unbind");
        check((Integer) end.get("activeDmaMappings") == base.activeMappings()
                        && MachineState.mappedBytes(rt.iommu(), domain) == base.mappedBytes(),
                "DMA mappings back to the GPU driver's %d; %s maps %d bytes", base.activeMappings(), domain,
                base.mappedBytes());
        check(boundFrames > base.frames(), "probe held %d frames while bound (its buffers)", boundFrames - base.frames());
        check(frames(rt) == base.frames(), "allocated frames back to %d (now %d)", base.frames(), frames(rt));
        check(rt.pinnedFrames() == base.pinned(), "pinned frames back to %d (now %d)", base.pinned(), rt.pinnedFrames());
        check(rt.serviceProperties(RESULT_FILTER).isEmpty(), "the DmaTestResult service is withdrawn");
        check(rt.bundle(DRIVER_BSN).isEmpty(), "bundle %s is uninstalled", DRIVER_BSN);
    }

    /** [7] and [8] Delete the GPU bundle: its driver unbinds, its model leaves; nothing may be left. */
    private void unloadGpu(DmaplaneRuntime rt, Path deployed, long bootSeq, long bootFrames, long bootPinned)
            throws Exception {
        section(7, "hot-unload the GPU: delete " + deployed);
        long t = System.nanoTime();
        Files.delete(deployed);
        DemoKit.await("the GPU driver unbound and its bundle uninstalled", () ->
                !MachineState.driverNames(rt.status()).contains(GPU_DRIVER_NAME) && rt.bundle(GPU_BSN).isEmpty()
                        ? Optional.of(true) : Optional.empty());
        note("the GPU driver and model gone %s after the delete", DemoKit.since(t));
        shell(rt, "dmaplane:memory");

        section(8, "checks after the unload");
        Map<String, Object> end = rt.status();
        Map<String, Object> iommu = rt.iommu();
        String domain = gpuDomain(rt);
        List<Map<String, Object>> trace = rt.trace();
        check(MachineState.traced(trace, bootSeq, "UNBIND", GPU, GPU_DRIVER_NAME), "UNBIND of %s traced: remove ran", GPU);
        check(MachineState.reports(rt.dmaDebug(), "LEAK_AT_UNBIND").isEmpty(),
                "dma-debug found no mapping leaked at unbind");
        check((Integer) end.get("activeDmaMappings") == 0 && MachineState.mappedBytes(iommu, domain) == 0,
                "0 active DMA mappings; %s maps 0 bytes", domain);
        check(frames(rt) == bootFrames, "allocated frames back to %d (now %d)", bootFrames, frames(rt));
        check(rt.pinnedFrames() == bootPinned, "pinned frames back to %d (now %d)", bootPinned, rt.pinnedFrames());
        check(MachineState.devres(end, GPU) == 0, "no device-managed resource left on %s", GPU);
        check(rt.bundle(GPU_BSN).isEmpty(), "bundle %s is uninstalled", GPU_BSN);
    }

    private static String gpuDomain(DmaplaneRuntime rt) throws Exception {
        return (String) MachineState.group(rt.iommu(), GPU).map(g -> g.get("domain")).orElse("?");
    }

    private static Object groupId(Map<String, Object> iommu, String device) {
        return MachineState.group(iommu, device).map(g -> g.get("id")).orElse("?");
    }

    private static long frames(DmaplaneRuntime rt) {
        return (Long) rt.status().get("allocatedFrames");
    }

    private void shell(DmaplaneRuntime rt, String line) throws Exception {
        kit.shell(rt, line);
    }

    private void section(int n, String title) {
        kit.section(n, title);
    }

    private void note(String fmt, Object... args) {
        kit.note(fmt, args);
    }

    private void check(boolean ok, String fmt, Object... args) {
        kit.check(ok, fmt, args);
    }
}
