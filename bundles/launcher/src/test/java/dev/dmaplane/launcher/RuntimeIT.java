package dev.dmaplane.launcher;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.osgi.framework.Bundle;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The runtime in a real embedded Felix on the default machine, booted from the distribution exactly as
 * {@code dmaplane} boots it: File Install on a temporary deploy directory, the GPU bundle (model and driver) and the
 * dmatest client of the GPU driver's dmaengine channel hot-loaded and removed, Gogo commands. The
 * bundles are not on this test's class path; the test sees the machine only through the JDK-typed query service.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class RuntimeIT {
    static final Path DIST = Path.of(System.getProperty("dmaplane.dist", "target/dist"));
    static final Path DRIVER = DIST.resolve("drivers").resolve(DmaTestDemo.DRIVER_JAR);
    static final Path GPU_DRIVER = DIST.resolve("drivers").resolve(DmaTestDemo.GPU_JAR);
    static final Duration WAIT = Duration.ofSeconds(10);
    /** Every function of the default machine, sorted. */
    static final List<String> DEFAULT_BDFS = List.of("0000:00:01.0", "0000:00:02.0", "0000:00:03.0", "0000:01:00.0",
            "0000:02:00.0", "0000:02:01.0", "0000:03:00.0", "0000:04:00.0", "0000:05:00.0", "0000:06:00.0");

    /** Runs {@code line} once Gogo knows its command ({@link DemoKit#gogoOnceKnown}). */
    static String gogoOnceKnown(DmaplaneRuntime rt, String line) throws TimeoutException, InterruptedException {
        return DemoKit.gogoOnceKnown(rt, line, WAIT);
    }

    @TempDir
    Path tmp;
    DmaplaneRuntime rt;
    Threads.Snapshot threads;

    @BeforeEach
    void start() throws Exception {
        threads = Threads.snapshot();
        rt = DmaplaneRuntime.start(new DmaplaneRuntime.Config(DIST, tmp.resolve("work"), null, false, 100), WAIT);
    }

    @AfterEach
    void stop() throws Exception {
        assertTrue(rt.stop(WAIT), "framework stopped in time");
        threads.assertAllNewThreadsEnd(Duration.ofSeconds(5));
    }

    @Test
    void bundlesStayOffTheTestClassPath() {
        assertThrows(ClassNotFoundException.class, () -> Class.forName("dev.dmaplane.machine.Machine"));
        assertThrows(ClassNotFoundException.class, () -> Class.forName("org.apache.felix.scr.impl.Activator"));
    }

    @Test
    void machineServiceIsRegisteredAndEveryBundleIsActive() throws Exception {
        assertTrue(rt.hasService("(objectClass=dev.dmaplane.machine.Machine)"));
        assertTrue(rt.hasService("(objectClass=dev.dmaplane.rdma.RdmaCore)"), "the RDMA core waits for HCA drivers");
        for (Bundle b : rt.framework().getBundleContext().getBundles()) {
            assertEquals(Bundle.ACTIVE, b.getState(), b.getSymbolicName() + " is active");
        }
        assertTrue(rt.bundle(DmaplaneRuntime.GOGO_SHELL_BSN).isEmpty(), "no shell reading the terminal in a test");
        Map<String, Object> s = rt.status();
        assertEquals(DEFAULT_BDFS.stream().filter(b -> !b.equals(DmaTestDemo.GPU)).toList(),
                MachineState.deviceNames(s).stream().sorted().toList(),
                "the default machine booted; the GPU's model comes with " + DmaTestDemo.GPU_JAR);
        assertTrue(rt.hasService("(objectClass=dev.dmaplane.accel.AccelCore)"), "the accelerator core is in the runtime set");
        assertEquals(64L << 30, s.get("ramBytes"));
        assertEquals(0, s.get("activeDmaMappings"));
        assertEquals(0, s.get("iommuFaults"));
    }

    @Test
    void dmatestBindsToTheGpuCopiesThroughTheIommuAndUnbindLeavesNothing() throws Exception {
        deployGpu();
        long baseFrames = frames();
        long baseSeq = (Long) rt.status().get("traceLastSeq");
        int baseMappings = (Integer) rt.status().get("activeDmaMappings");
        int baseDevres = MachineState.devres(rt.status(), DmaTestDemo.GPU);

        Path deployed = DemoKit.deploy(DRIVER, rt.deployDir());
        assertEquals(List.of(DmaTestDemo.AUX), awaitBound(), "dmatest claims the GPU driver's channel only");
        Map<String, Object> r = result();
        assertEquals(6, r.get("dmatest.tests"));
        assertEquals(0, r.get("dmatest.failures"), Arrays.toString((String[]) r.get("dmatest.transfers")));
        assertTrue((Long) r.get("dmatest.bytesCopied") > 0 && (Long) r.get("dmatest.bytesFilled") > 0);
        assertEquals(12L * 16384, r.get("dmatest.bytesVerified"));
        assertTrue(MachineState.traced(rt.trace(), baseSeq, "BIND", DmaTestDemo.AUX, DmaTestDemo.DRIVER_NAME));
        assertEquals(baseMappings, rt.status().get("activeDmaMappings"), "while bound dmatest keeps nothing mapped");
        assertTrue(frames() > baseFrames, "probe allocated its buffers");

        assertEquals("PASSED", r.get("dmatest.faultCheck"), (String) r.get("dmatest.faultDetail"));
        assertEquals("WRITE_FAILED", r.get("dmatest.faultStatus"));
        assertEquals(0L, r.get("dmatest.faultBytesChanged"));
        long iova = (Long) r.get("dmatest.faultIova");
        List<Map<String, Object>> faults = MachineState.faults(rt.iommu());
        assertEquals(1, faults.size());
        assertEquals(DmaTestDemo.GPU, faults.getFirst().get("device"));
        assertEquals(iova, faults.getFirst().get("iova"));
        assertEquals(true, faults.getFirst().get("write"));

        Files.delete(deployed);
        DemoKit.await("dmatest gone", WAIT, () -> !MachineState.driverNames(rt.status()).contains(DmaTestDemo.DRIVER_NAME)
                && rt.bundle(DmaTestDemo.DRIVER_BSN).isEmpty() ? Optional.of(true) : Optional.empty());
        assertTrue(MachineState.traced(rt.trace(), baseSeq, "UNBIND", DmaTestDemo.AUX, DmaTestDemo.DRIVER_NAME), "remove ran");
        Map<String, Object> s = rt.status();
        assertEquals(baseMappings, s.get("activeDmaMappings"));
        assertEquals(baseFrames, frames(), "buffers freed");
        assertEquals(0L, rt.pinnedFrames(), "nothing pinned");
        assertEquals(baseDevres, MachineState.devres(s, DmaTestDemo.GPU), "the GPU driver's own devres only");
        assertTrue(MachineState.reports(rt.dmaDebug(), "LEAK_AT_UNBIND").isEmpty(), "dma-debug found no leak");
        assertTrue(rt.serviceProperties(DmaTestDemo.RESULT_FILTER).isEmpty(), "the result service went with the binding");
    }

    @Test
    void gogoCommandsShowTheMachineAndTheBoundDriver() throws Exception {
        String atBoot = rt.gogo("dmaplane:drivers", WAIT);
        assertTrue(atBoot.startsWith("vfio-pci  [dev.dmaplane.vfio ")
                && atBoot.lines().anyMatch(l -> l.strip().equals("bound:   -"))
                && atBoot.lines().filter(l -> !l.startsWith(" ")).count() == 1, "only vfio-pci of the runtime set,"
                + " bound to nothing (it binds by driver_override only):\n" + atBoot);
        assertEquals("no RDMA devices", rt.gogo("rdma:dev", WAIT), "no HCA driver is deployed");
        deployGpu();
        String lspci = rt.gogo("dmaplane:lspci", WAIT);
        for (String bdf : DEFAULT_BDFS) {
            assertTrue(lspci.contains(bdf), bdf + " in dmaplane:lspci:\n" + lspci);
        }
        DemoKit.deploy(DRIVER, rt.deployDir());
        awaitBound();

        String drivers = rt.gogo("dmaplane:drivers", WAIT);
        assertTrue(drivers.contains("dmatest  [dev.dmaplane.driver.dmatest "), drivers);
        assertTrue(drivers.contains("matches: auxiliary gpu.dma"), drivers);
        assertTrue(drivers.contains("bound:   " + DmaTestDemo.AUX), drivers);
        assertTrue(rt.gogo("dmaplane:lspci -t", WAIT).contains("[1da0:0001] 0000:03:00.0 model=gpu driver=gpu"));
        String verbose = rt.gogo("dmaplane:lspci -v 03:00.0", WAIT);
        assertTrue(verbose.contains("Mem+ BusMaster+") && verbose.contains("Kernel driver in use: gpu"), verbose);
        String iommu = rt.gogo("dmaplane:iommu", WAIT);
        assertTrue(iommu.contains("  " + DmaTestDemo.GPU + "  gpu"), iommu);
        assertTrue(rt.gogo("dmaplane:iommu faults", WAIT).startsWith(DmaTestDemo.GPU + " write at iova 0x"));
        assertTrue(rt.gogo("dmaplane:iommu mappings", WAIT).contains(" rw"), "the GPU driver's rings stay mapped");
        String debug = rt.gogo("dmaplane:dmadebug", WAIT);
        assertTrue(debug.startsWith("dma-debug on: ") && debug.contains(" 1 reports"), debug);
        assertTrue(debug.contains("by kind: ACCESS_UNMAPPED=1"), debug);

        String devices = rt.gogo("dmaplane:devices", WAIT);
        assertTrue(devices.lines().anyMatch(l -> l.contains(DmaTestDemo.AUX) && l.contains("dmatest")), devices);
        assertTrue(rt.gogo("dmaplane:trace 1 BIND", WAIT).matches("\\[ *\\d+\\.\\d{6}\\] #\\d+ BIND gpu\\.dma\\.0 dmatest"));
        assertTrue(rt.gogo("dmaplane:memory", WAIT).contains(" active mappings"));
        assertTrue(rt.gogo("dmaplane:dmabuf", WAIT).endsWith("Total 0 objects, 0 bytes"), "the dma-buf bundle is in the runtime set");
        assertTrue(rt.gogo("lb", WAIT).contains("dmaplane dmatest driver"), "Gogo's own commands work too");
        Gogo.CommandException e = assertThrows(Gogo.CommandException.class, () -> rt.gogo("dmaplane:trace NOPE", WAIT));
        assertTrue(e.getMessage().contains("unknown trace kind 'NOPE'"), e.getMessage());
        Gogo.CommandException nodev = assertThrows(Gogo.CommandException.class, () -> rt.gogo("dmaplane:lspci -v 42:00.0", WAIT));
        assertTrue(nodev.getMessage().contains("ENODEV: no PCI function 0000:42:00.0"), nodev.getMessage());
    }

    @Test
    void stoppingTheDriverBundleRunsRemoveAndStartingItBindsAgain() throws Exception {
        deployGpu();
        long baseFrames = frames();
        int baseMappings = (Integer) rt.status().get("activeDmaMappings");
        DemoKit.deploy(DRIVER, rt.deployDir());
        awaitBound();
        Bundle driver = rt.bundle(DmaTestDemo.DRIVER_BSN).orElseThrow();
        driver.stop();
        Map<String, Object> s = rt.status();
        assertFalse(MachineState.driverNames(s).contains(DmaTestDemo.DRIVER_NAME), "stopping the bundle unregisters the driver");
        assertEquals(baseFrames, s.get("allocatedFrames"));
        assertEquals(baseMappings, s.get("activeDmaMappings"));
        assertTrue(rt.serviceProperties(DmaTestDemo.RESULT_FILTER).isEmpty());
        driver.start();
        assertEquals(List.of(DmaTestDemo.AUX), MachineState.boundTo(rt.status(), DmaTestDemo.DRIVER_NAME), "restart binds again");
        assertEquals(0, result().get("dmatest.failures"), "the channel works again after the first run's fault");
        assertEquals(2, MachineState.faults(rt.iommu()).size(), "each run's fault check faults once");
        // the framework stop in @AfterEach unbinds it a last time while the machine is still up
    }

    /** Deploys the GPU bundle: its model makes 03:00.0 appear and its driver binds it, offering the channel. */
    private void deployGpu() throws Exception {
        DemoKit.deploy(GPU_DRIVER, rt.deployDir());
        assertEquals(List.of(DmaTestDemo.GPU), DemoKit.await("the GPU driver bound", WAIT, () -> {
            List<String> b = MachineState.boundTo(rt.status(), DmaTestDemo.GPU_DRIVER_NAME);
            return b.isEmpty() ? Optional.empty() : Optional.of(b);
        }));
    }

    private List<String> awaitBound() throws Exception {
        return DemoKit.await("dmatest bound", WAIT, () -> {
            List<String> b = MachineState.boundTo(rt.status(), DmaTestDemo.DRIVER_NAME);
            return b.isEmpty() ? Optional.empty() : Optional.of(b);
        });
    }

    private Map<String, Object> result() throws Exception {
        List<Map<String, Object>> all = rt.serviceProperties(DmaTestDemo.RESULT_FILTER);
        assertEquals(1, all.size(), "one DmaTestResult service per bound device");
        assertEquals(DmaTestDemo.GPU, all.getFirst().get("dmatest.device"));
        return all.getFirst();
    }

    private long frames() {
        return (Long) rt.status().get("allocatedFrames");
    }
}
