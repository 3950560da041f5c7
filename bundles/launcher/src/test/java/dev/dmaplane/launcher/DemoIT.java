package dev.dmaplane.launcher;

import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The launcher's modes end to end, through {@link Main#run}, as the {@code dmaplane} script calls them. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class DemoIT {
    @TempDir
    Path tmp;

    private record Run(int code, String out, String err) {
    }

    private Run main(String... args) throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    /** The headline demo, GPUDirect RDMA: every scenario's checks and the launcher's own after the unload. */
    @Test
    void theHeadlineDemoPassesAndLeavesNoThreadBehind() throws Exception {
        Threads.Snapshot threads = Threads.snapshot();
        Run r = main("demo", "--work", tmp.resolve("work").toString(), "--dist", RuntimeIT.DIST.toString());
        assertEquals(0, r.code(), r.out());
        assertTrue(r.out().contains("ok     the GPU driver bound 0000:03:00.0"), r.out());
        assertTrue(r.out().contains("ok     Soft-RoCE bound [0000:04:00.0, 0000:05:00.0] as rxe0 and rxe1"), r.out());
        assertTrue(r.out().contains("ok     host bytes written during the transfer: 0"), r.out());
        assertTrue(r.out().contains("mapped BUS_ADDR at bus address"), r.out());
        assertTrue(r.out().contains("ok     the object moved to host memory for rxe1"), r.out());
        assertTrue(r.out().contains("ok     the object left VRAM and came back"), r.out());
        assertTrue(r.out().contains("ok     export of an object private to the GPU VM (VM_ALWAYS_VALID): EPERM"), r.out());
        assertTrue(r.out().matches("(?s).*gpudirect: all \\d+ checks passed.*"), r.out());
        assertTrue(r.out().contains("ok     pinned frames back to"), r.out());
        assertTrue(r.out().strip().endsWith("demo passed"), r.out());
        assertTrue(!r.out().contains("FAILED"), r.out());
        threads.assertAllNewThreadsEnd(Duration.ofSeconds(5));
    }

    @Test
    void demoListNamesTheDemosAndAnUnknownOneIsAUsageError() throws Exception {
        Run list = main("demo", "--list");
        assertEquals(0, list.code(), list.err());
        assertTrue(list.out().startsWith("gpudirect "), list.out());
        assertTrue(list.out().contains("\ndmatest "), list.out());
        Run bad = main("demo", "nope");
        assertEquals(2, bad.code());
        assertTrue(bad.err().contains("no demo named 'nope'"), bad.err());
    }

    @Test
    void theDmatestDemoPassesAndLeavesNoThreadBehind() throws Exception {
        Threads.Snapshot threads = Threads.snapshot();
        Run r = main("demo", "dmatest", "--work", tmp.resolve("work").toString(), "--dist", RuntimeIT.DIST.toString());
        assertEquals(0, r.code(), r.out());
        assertTrue(r.out().contains("ok     the GPU driver bound 0000:03:00.0 only"), r.out());
        assertTrue(r.out().contains("dmatest drives [gpu.dma.0]"), r.out());
        assertTrue(r.out().contains("ok     the GPU shares IOMMU group"), r.out());
        assertTrue(r.out().contains("ok     6 transfers (4 copies, a fill, a copy after the fault), 0 failures"), r.out());
        assertTrue(r.out().contains("ok     the IOMMU recorded one write fault of 0000:03:00.0 at iova 0x"), r.out());
        assertTrue(r.out().contains("ok     no byte of the page that used to be mapped there changed"), r.out());
        assertTrue(r.out().contains("ok     UNBIND of gpu.dma.0 traced: remove ran"), r.out());
        assertTrue(r.out().contains("ok     UNBIND of 0000:03:00.0 traced: remove ran"), r.out());
        assertTrue(r.out().contains("ok     0 active DMA mappings"), r.out());
        assertTrue(r.out().strip().endsWith("demo passed"), r.out());
        assertTrue(!r.out().contains("  FAILED ") && !r.out().contains("demo FAILED"), r.out()); // WRITE_FAILED is a result
        threads.assertAllNewThreadsEnd(Duration.ofSeconds(5));
    }

    @Test
    void shellRunsOneCommand() throws Exception {
        Run r = main("shell", "--work", tmp.resolve("work").toString(), "--dist", RuntimeIT.DIST.toString(), "dmaplane:trace", "2", "DEVICE_ADD");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("DEVICE_ADD 0000:06:00.0 PCI"), r.out());
        Run bad = main("shell", "--work", tmp.resolve("work").toString(), "--dist", RuntimeIT.DIST.toString(), "dmaplane:nope");
        assertEquals(1, bad.code());
        assertTrue(bad.err().contains("Command not found: dmaplane:nope"), bad.err());
    }

    @Test
    void aMachineFileTheFrameworkCannotBootFailsFastWithTheReason() throws Exception {
        Path machine = Files.writeString(tmp.resolve("machine.yaml"), "machine: {}\n");
        long t0 = System.nanoTime();
        Run r = main("shell", "--topology", machine.toString(), "--work", tmp.resolve("work").toString(), "--dist",
                RuntimeIT.DIST.toString(), "lb");
        assertEquals(1, r.code());
        assertEquals(machine + ":1:1: machine: unknown key 'machine' (known: iommu, memory, pci)", r.err().strip());
        assertTrue(System.nanoTime() - t0 < Duration.ofSeconds(10).toNanos(), "no wait for the start timeout");
    }

    @Test
    void topologyBootsTheMachineItNames() throws Exception {
        Path machine = TestMachines.copy(TestMachines.SMALL_GPU, tmp);
        Run r = main("shell", "--topology", machine.toString(), "--work", tmp.resolve("work").toString(), "--dist",
                RuntimeIT.DIST.toString(), "dmaplane:lspci");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().startsWith("-[0000:00]---01.0-[01]----00.0  3D controller [1da0:0001] 0000:01:00.0 model=copyengine"), r.out());
        assertTrue(r.out().contains("0000:00:01.0") && !r.out().contains("0000:03:00.0"), r.out());
    }

    @Test
    void aWorkDirectoryThatIsNotOursIsNotWiped() throws Exception {
        Path precious = Files.writeString(Files.createDirectories(tmp.resolve("home")).resolve("thesis.tex"), "x");
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> main("shell", "--work",
                tmp.resolve("home").toString(), "--dist", RuntimeIT.DIST.toString(), "lb"));
        assertTrue(e.getMessage().startsWith("refusing to wipe"), e.getMessage());
        assertTrue(Files.exists(precious));
    }
}
