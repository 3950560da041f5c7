package dev.dmaplane.launcher;

import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code dmaplane.machine} (what {@code --topology} sets) boots the machine a file describes, in a real embedded
 * Felix: its functions, its memory, its IOMMU groups, and the same GPU and dmatest bundles driving its GPU (the
 * small machine of {@link TestMachines#SMALL_GPU} with the GPU model and the MSI-X vectors its driver needs).
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class MachineFileIT {
    static final String GPU = "0000:01:00.0";

    @TempDir
    Path tmp;

    /**
     * A bad machine file given to {@code shell} is one line, {@code FILE:LINE:COLUMN: message} as the GNU Coding
     * Standards ("Formatting Error Messages") have compilers write it, and exit 1; the framework never starts (no
     * work directory, so no Declarative Services stack); {@code --debug} adds the loader's stack below the line.
     */
    @Test
    void aBadMachineFileIsOneLineWithItsPositionAndExitOne() throws Exception {
        Threads.Snapshot threads = Threads.snapshot();
        String text = TestMachines.text(TestMachines.SMALL_GPU).replace("size: 1GiB, kind: memory", "size: 3MiB, kind: memory");
        Path file = Files.writeString(tmp.resolve("bad.yaml"), text);
        List<String> lines = text.lines().toList();
        int line = 1 + lines.indexOf(lines.stream().filter(l -> l.contains("3MiB")).findFirst().orElseThrow());
        int column = 1 + lines.get(line - 1).indexOf("3MiB");
        Path work = tmp.resolve("work");
        String[] args = {"shell", "--topology", file.toString(), "--work", work.toString(), "--dist",
                RuntimeIT.DIST.toString(), "lb"};

        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        assertEquals(1, Main.run(args, new PrintStream(out, true, UTF_8), new PrintStream(err, true, UTF_8)));
        assertEquals(file + ":" + line + ":" + column + ": pci.hostBridges[0].children[0].children[0].bars[1].size:"
                + " '0x300000' (0000:01:00.0 BAR 2) is not a power of two of at least 4KiB (the BAR size is the alignment"
                + " its address gets)\n", err.toString(UTF_8));
        assertEquals("", out.toString(UTF_8));
        assertFalse(Files.exists(work), "the framework did not start");

        String[] debug = {"shell", "--debug", "--topology", file.toString(), "--work", work.toString(), "--dist",
                RuntimeIT.DIST.toString(), "lb"};
        ByteArrayOutputStream debugErr = new ByteArrayOutputStream();
        assertEquals(1, Main.run(debug, new PrintStream(OutputStream.nullOutputStream()), new PrintStream(debugErr, true, UTF_8)));
        List<String> debugLines = debugErr.toString(UTF_8).lines().toList();
        assertEquals(err.toString(UTF_8).strip(), debugLines.getFirst());
        assertTrue(debugLines.get(1).startsWith("dev.dmaplane.errno.ErrnoException: EINVAL: " + file + ":" + line + ":"),
                debugLines.get(1));
        assertTrue(debugLines.stream().anyMatch(l -> l.contains("dev.dmaplane.pci.TopologyLoader.load(")),
                debugErr.toString(UTF_8));
        threads.assertAllNewThreadsEnd(Duration.ofSeconds(5));
    }

    @Test
    void theMachineFileIsTheMachineAndDmatestDrivesItsGpuChannel() throws Exception {
        Threads.Snapshot threads = Threads.snapshot();
        String text = TestMachines.text(TestMachines.SMALL_GPU).replace("              model: copyengine\n",
                "              msix: { vectors: 64, bar: 0 }\n              model: gpu\n");
        assertTrue(text.contains("model: gpu"), text);
        Path file = Files.writeString(tmp.resolve("small-gpu-gpu.yaml"), text);
        DmaplaneRuntime.Config config = new DmaplaneRuntime.Config(RuntimeIT.DIST, tmp.resolve("work"), null, false, 100)
                .withMachineFile(file);
        try (DmaplaneRuntime rt = DmaplaneRuntime.start(config, RuntimeIT.WAIT)) {
            Map<String, Object> s = rt.status();
            assertEquals(1L << 30, s.get("ramBytes"));
            assertEquals(List.of("0000:00:01.0"), MachineState.deviceNames(s), "the GPU's model is not loaded yet");

            Path gpuDeployed = DemoKit.deploy(RuntimeIT.GPU_DRIVER, rt.deployDir());
            assertEquals(List.of(GPU), DemoKit.await("the GPU driver bound", RuntimeIT.WAIT, () -> {
                List<String> b = MachineState.boundTo(rt.status(), DmaTestDemo.GPU_DRIVER_NAME);
                return b.isEmpty() ? Optional.empty() : Optional.of(b);
            }));
            assertEquals(List.of(GPU), MachineState.groupMembers(rt.iommu(), GPU), "ACS at the root port: a group of its own");
            long frames = (Long) rt.status().get("allocatedFrames");
            int mappings = (Integer) rt.status().get("activeDmaMappings");
            Path deployed = DemoKit.deploy(RuntimeIT.DRIVER, rt.deployDir());
            assertEquals(List.of(DmaTestDemo.AUX), DemoKit.await("dmatest bound", RuntimeIT.WAIT, () -> {
                List<String> b = MachineState.boundTo(rt.status(), DmaTestDemo.DRIVER_NAME);
                return b.isEmpty() ? Optional.empty() : Optional.of(b);
            }));
            Map<String, Object> r = rt.serviceProperties(DmaTestDemo.RESULT_FILTER).getFirst();
            assertEquals(GPU, r.get("dmatest.device"));
            assertEquals(0, r.get("dmatest.failures"));
            assertEquals("PASSED", r.get("dmatest.faultCheck"));

            Files.delete(deployed);
            DemoKit.await("dmatest gone", RuntimeIT.WAIT, () -> rt.bundle(DmaTestDemo.DRIVER_BSN).isEmpty()
                    && MachineState.boundTo(rt.status(), DmaTestDemo.DRIVER_NAME).isEmpty() ? Optional.of(true) : Optional.empty());
            assertEquals(mappings, rt.status().get("activeDmaMappings"));
            assertEquals(frames, rt.status().get("allocatedFrames"));
            Files.delete(gpuDeployed);
            DemoKit.await("the GPU driver gone", RuntimeIT.WAIT, () -> rt.bundle(DmaTestDemo.GPU_BSN).isEmpty()
                    ? Optional.of(true) : Optional.empty());
            assertEquals(0, rt.status().get("activeDmaMappings"));
            assertTrue(rt.gogo("dmaplane:memory", RuntimeIT.WAIT).startsWith("RAM        1 GiB"));
        }
        threads.assertAllNewThreadsEnd(Duration.ofSeconds(5));
    }
}
