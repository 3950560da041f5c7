package dev.dmaplane.launcher;

import org.osgi.framework.InvalidSyntaxException;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeoutException;

/**
 * The headline demo ({@code dmaplane demo}): boot the default machine, hot-load the GPU bundle, Soft-RoCE and the
 * gpudirect bundle through {@code deploy/}, run {@code gpudirect:demo} (GPUDirect RDMA between VRAM and rxe0 beside
 * the bounce path, the HCA without a peer-to-peer path, eviction under traffic, the fallbacks; each with its own
 * checks), then delete the bundles in reverse and check that nothing is left allocated, pinned or mapped. Exit 0
 * only if every check held.
 */
final class GpuDirectDemo {
    static final String GPUDIRECT_JAR = "gpudirect.jar";
    static final String GPUDIRECT_BSN = "dev.dmaplane.gpudirect";
    static final String SOFTROCE_JAR = "driver-softroce.jar";
    static final String SOFTROCE_BSN = "dev.dmaplane.driver.softroce";
    static final String RXE_DRIVER = "rdma_rxe";
    /** The command the gpudirect bundle offers, matched by class name (the launcher cannot load the class). */
    static final String COMMANDS_FILTER = "(objectClass=dev.dmaplane.gpudirect.impl.GpuDirectCommands)";
    static final List<String> HCAS = List.of("0000:04:00.0", "0000:05:00.0");
    /** How long the scenarios may take together (they take a few seconds). */
    static final Duration RUN_TIMEOUT = Duration.ofMinutes(5);

    private final DmaplaneRuntime.Config config;
    private final DemoKit kit;

    GpuDirectDemo(DmaplaneRuntime.Config config, PrintStream out) {
        this.config = config;
        this.kit = new DemoKit(out);
    }

    /** A bundle of the demo: its jar in the distribution, its symbolic name, and what proves it is up. */
    private record Part(String jar, String bsn) {
    }

    int run() throws Exception {
        List<Part> parts = List.of(new Part(DmaTestDemo.GPU_JAR, DmaTestDemo.GPU_BSN), new Part(SOFTROCE_JAR, SOFTROCE_BSN),
                new Part(GPUDIRECT_JAR, GPUDIRECT_BSN));
        for (Part p : parts) {
            Path jar = config.distDir().resolve("drivers").resolve(p.jar());
            if (!Files.isRegularFile(jar)) {
                kit.out().println("dmaplane demo: the bundle " + jar + " is missing (build with mvn install)");
                return 1;
            }
        }
        kit.out().println("dmaplane demo: GPUDirect RDMA. Hot-load a GPU and Soft-RoCE into a running machine, let an RDMA");
        kit.out().println("HCA write straight into the GPU's VRAM through a dma-buf, compare with the bounce path, take it all out");
        long t0 = System.nanoTime();
        kit.section(1, "boot: Apache Felix " + DmaplaneRuntime.versions().getProperty("felix.version")
                + " with the runtime bundles of " + config.distDir().resolve("bundle"));
        DmaplaneRuntime rt = DmaplaneRuntime.start(config, DmaplaneRuntime.DEFAULT_START_TIMEOUT);
        boolean stopped = false;
        try {
            kit.note("machine up after %s; work directory %s", DemoKit.since(t0), config.workDir());
            kit.shell(rt, "dmaplane:lspci -t");
            long bootFrames = frames(rt);
            long bootPinned = rt.pinnedFrames();
            long bootSeq = (Long) rt.status().get("traceLastSeq");
            List<Path> deployed = load(rt, parts);
            run(rt);
            unload(rt, parts, deployed, bootSeq, bootFrames, bootPinned);
            long t3 = System.nanoTime();
            stopped = rt.stop(Duration.ofSeconds(10));
            kit.section(6, "shutdown: " + (stopped ? "framework stopped in " + DemoKit.since(t3)
                    : "framework did not stop in 10 s"));
            kit.check(stopped, "framework stopped");
        } catch (TimeoutException e) {
            kit.failed(e.getMessage());
        } finally {
            if (!stopped) {
                rt.stop(Duration.ofSeconds(10));
            }
        }
        return kit.verdict();
    }

    /** [2] The GPU (model and driver), Soft-RoCE, then the demo's own bundle, each waited for. */
    private List<Path> load(DmaplaneRuntime rt, List<Part> parts) throws Exception {
        kit.section(2, "hot-load the GPU, Soft-RoCE and the gpudirect bundle: copy them into " + rt.deployDir());
        List<Path> deployed = new ArrayList<>();
        long t = System.nanoTime();
        deployed.add(DemoKit.deploy(config.distDir().resolve("drivers").resolve(parts.get(0).jar()), rt.deployDir()));
        List<String> gpu = DemoKit.await("the GPU driver bound", () -> bound(rt, DmaTestDemo.GPU_DRIVER_NAME, 1));
        kit.check(gpu.equals(List.of(DmaTestDemo.GPU)), "the GPU driver bound %s, %s after the copy: accel0 on the "
                + "accelerator core", DmaTestDemo.GPU, DemoKit.since(t));
        t = System.nanoTime();
        deployed.add(DemoKit.deploy(config.distDir().resolve("drivers").resolve(parts.get(1).jar()), rt.deployDir()));
        List<String> hcas = DemoKit.await("Soft-RoCE bound both HCAs", () -> bound(rt, RXE_DRIVER, 2));
        kit.check(hcas.equals(HCAS), "Soft-RoCE bound %s as rxe0 and rxe1, %s after the copy", HCAS, DemoKit.since(t));
        deployed.add(DemoKit.deploy(config.distDir().resolve("drivers").resolve(parts.get(2).jar()), rt.deployDir()));
        DemoKit.await("the gpudirect:demo command", () -> {
            try {
                return rt.hasService(COMMANDS_FILTER) ? Optional.of(true) : Optional.empty();
            } catch (InvalidSyntaxException e) {
                throw new IllegalStateException(e);
            }
        });
        kit.shell(rt, "accel:devices");
        kit.shell(rt, "rdma:dev");
        return deployed;
    }

    private static Optional<List<String>> bound(DmaplaneRuntime rt, String driver, int count) {
        List<String> b = MachineState.boundTo(rt.status(), driver);
        return b.size() == count ? Optional.of(b) : Optional.empty();
    }

    /** [3] The scenarios, inside the runtime, through the shell as a user would type it. */
    private void run(DmaplaneRuntime rt) throws Exception {
        kit.section(3, "gpudirect:demo, the scenarios (their numbers are the gpudirect bundle's)");
        String report = kit.shellOnceKnown(rt, "gpudirect:demo", RUN_TIMEOUT);
        List<String> failed = report.lines().filter(l -> l.strip().startsWith("FAILED")).toList();
        String last = report.lines().reduce((a, b) -> b).orElse("");
        kit.check(failed.isEmpty() && last.matches("gpudirect: all \\d+ checks passed"),
                "the scenarios' checks: %s", failed.isEmpty() ? last : failed.size() + " FAILED");
    }

    /** [4] and [5] Delete the bundles in reverse; nothing may be left. */
    private void unload(DmaplaneRuntime rt, List<Part> parts, List<Path> deployed, long bootSeq, long bootFrames,
                        long bootPinned) throws Exception {
        kit.section(4, "hot-unload: delete the gpudirect bundle, Soft-RoCE, then the GPU");
        long t = System.nanoTime();
        for (int i = deployed.size() - 1; i >= 0; i--) {
            Files.delete(deployed.get(i));
            String bsn = parts.get(i).bsn();
            DemoKit.await(bsn + " uninstalled", () -> rt.bundle(bsn).isEmpty() ? Optional.of(true) : Optional.empty());
        }
        kit.note("all three gone %s after the first delete", DemoKit.since(t));
        kit.shell(rt, "dmaplane:memory");

        kit.section(5, "checks after the unload");
        var end = rt.status();
        var trace = rt.trace();
        kit.check(MachineState.traced(trace, bootSeq, "UNBIND", DmaTestDemo.GPU, DmaTestDemo.GPU_DRIVER_NAME)
                        && HCAS.stream().allMatch(h -> MachineState.traced(trace, bootSeq, "UNBIND", h, RXE_DRIVER)),
                "UNBIND of the GPU and both HCAs traced: their remove ran");
        kit.check(MachineState.reports(rt.dmaDebug(), "LEAK_AT_UNBIND").isEmpty(), "dma-debug found no mapping leaked at unbind");
        kit.check((Integer) end.get("activeDmaMappings") == 0, "0 active DMA mappings");
        kit.check(frames(rt) == bootFrames, "allocated frames back to %d (now %d)", bootFrames, frames(rt));
        kit.check(rt.pinnedFrames() == bootPinned, "pinned frames back to %d (now %d)", bootPinned, rt.pinnedFrames());
        kit.check(MachineState.devres(end, DmaTestDemo.GPU) == 0
                        && HCAS.stream().allMatch(h -> MachineState.devres(end, h) == 0),
                "no device-managed resource left on the GPU or the HCAs");
    }

    private static long frames(DmaplaneRuntime rt) {
        return (Long) rt.status().get("allocatedFrames");
    }
}
