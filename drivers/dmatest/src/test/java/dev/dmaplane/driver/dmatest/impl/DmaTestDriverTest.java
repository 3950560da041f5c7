package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.driver.dmatest.DmaTestResult;
import dev.dmaplane.driver.dmatest.FaultCheck;
import dev.dmaplane.driver.dmatest.Transfer;
import dev.dmaplane.iommu.IommuFault;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.trace.TraceEvent;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** dmatest on the emulated copy engine of real machines: the default one and small ones written here. */
class DmaTestDriverTest {
    static final String GPU = "0000:03:00.0";

    /** Results published while bound, withdrawn by remove. */
    static final class Published implements ResultPublisher {
        final List<DmaTestResult> live = new ArrayList<>();
        int withdrawn;

        @Override
        public AutoCloseable publish(DmaTestResult result) {
            live.add(result);
            return () -> {
                live.remove(result);
                withdrawn++;
            };
        }
    }

    /** A root port per entry of {@code endpoints}, each with that endpoint (YAML list items) below it. */
    static String machineWith(String iommu, String... endpoints) {
        StringBuilder sb = new StringBuilder("memory: 1GiB\niommu: " + iommu + "\npci:\n  hostBridges:\n    - children:\n");
        for (int i = 0; i < endpoints.length; i++) {
            String port = """
                    - bdf: "00:0%d.0"
                      type: rootPort
                      vendor: "0x1da0"
                      device: "0x1000"
                      class: "0x060400"
                      acs: [SV, RR, CR, UF]
                      children:
                    """.formatted(i + 1);
            sb.append(port.indent(8)).append(endpoints[i].formatted(i + 1).indent(12));
        }
        return sb.toString();
    }

    /** An endpoint on bus %d with BAR0 registers; {@code ids} and {@code extra} are YAML lines. */
    static String endpoint(String ids, String extra) {
        return """
                - bdf: "%%02x:00.0"
                  type: endpoint
                %s
                  bars:
                    - { index: 0, size: 16MiB, kind: mmio }
                %s""".formatted(ids.indent(2).stripTrailing(), extra.indent(2).stripTrailing()).replace("%%", "%");
    }

    static final String COPY_ENGINE_GPU = endpoint("vendor: \"0x1da0\"\ndevice: \"0x0001\"\nclass: \"0x030200\"", "model: gpu");

    Machine machine;
    final Published published = new Published();

    Machine boot(Machine m) {
        machine = m;
        return m;
    }

    @AfterEach
    void close() {
        if (machine != null) {
            machine.close();
        }
    }

    @Test
    void selfTestRunsOnTheGpuCopyEngineAndRemoveReleasesEverything() {
        boot(Machine.bootDefault());
        long frames = machine.memory().allocatedFrames();
        long seq = machine.tracer().lastSeq();
        DmaTestDriver driver = new DmaTestDriver(machine, Parameters.DEFAULTS, published);
        machine.devices().registerDriver(driver);

        PciFunction gpu = machine.pci().function(GPU);
        assertEquals(List.of(gpu), machine.devices().boundTo(driver), "dmatest claims the copy-engine GPU only");
        DmaTestResult r = published.live.getFirst();
        assertEquals(GPU, r.device());
        assertEquals(6, r.tests(), "four copies, a fill, a copy after the reset");
        assertEquals(0, r.failures(), r.transfers().toString());
        assertTrue(r.passed());
        assertTrue(r.bytesCopied() > 0 && r.bytesFilled() > 0, r.summary());
        assertEquals((5 * 2 + 1 + 1) * 16384, r.bytesVerified(), "source and destination of 5 copies, the fill, the faulted buffer");
        assertEquals(r.transfers().stream().filter(t -> t.operation().startsWith("copy") && t.ok()).mapToLong(Transfer::length).sum(),
                r.bytesCopied());

        FaultCheck f = r.faultCheck();
        assertEquals(FaultCheck.Outcome.PASSED, f.outcome(), f.detail());
        assertEquals(ST_WRITE_FAULT, f.status());
        assertEquals(f.iova(), f.faultAddress());
        assertEquals(0, f.bytesChanged());
        List<IommuFault> faults = machine.iommu().faults();
        assertEquals(1, faults.size());
        assertEquals(GPU, faults.getFirst().device());
        assertEquals(f.iova(), faults.getFirst().iova());
        assertTrue(faults.getFirst().write());
        Transfer stale = r.transfers().get(5);
        assertEquals("copy to stale IOVA", stale.operation());
        assertEquals(f.iova(), stale.destination());
        assertEquals(List.of(DmaDebugReport.Kind.ACCESS_UNMAPPED), machine.dmaDebug().reports().stream().map(DmaDebugReport::kind).toList(),
                "dma-debug saw the refused access, and nothing else");

        List<TraceEvent> maps = machine.tracer().since(seq).stream().filter(e -> e.device().equals(GPU)
                && e.kind() == TraceKind.MAP).toList();
        assertEquals(1 + 5 * 2 + 1 + 2, maps.size(), "ring, two per copy, the fill, source and destination of the stale copy");
        assertTrue(maps.stream().anyMatch(e -> e.address() == r.ringIova() && e.detail().startsWith("coherent")));

        assertEquals(1, machine.activeDmaMappings(), "while bound only the ring stays mapped");
        assertTrue(gpu.busMasterEnabled());
        assertEquals(STATUS_ENABLED, gpu.bar(0).orElseThrow().mmio().read(REG_STATUS, 8));
        assertEquals(frames + 1 + 2 * 4, machine.memory().allocatedFrames(), "a ring page and two 16 KiB buffers");

        machine.devices().unregisterDriver(driver);
        assertTrue(gpu.driver().isEmpty());
        assertEquals(0, machine.activeDmaMappings());
        assertEquals(frames, machine.memory().allocatedFrames());
        assertFalse(gpu.busMasterEnabled());
        assertFalse(gpu.configSpace().memorySpaceEnabled(), "the driver turned memory decoding off");
        assertEquals(-1L, gpu.bar(0).orElseThrow().mmio().read(REG_STATUS, 8), "so its registers read all-ones");
        gpu.setMemorySpace(true); // as setpci would, to look at them
        assertEquals(0, gpu.bar(0).orElseThrow().mmio().read(REG_STATUS, 8), "engine disabled");
        assertEquals(0, gpu.bar(0).orElseThrow().mmio().read(REG_RING_BASE, 8));
        assertTrue(published.live.isEmpty());
        assertEquals(1, published.withdrawn);
        assertEquals(0, machine.iommu().groupOf(gpu).orElseThrow().domain().mappedBytes());
        assertTrue(machine.dmaDebug().reports(DmaDebugReport.Kind.LEAK_AT_UNBIND).isEmpty());
        assertTrue(driver.results().isEmpty());
    }

    @Test
    void claimsClass030200ExactlyOrTheGpuIdAndRefusesAFunctionWithoutTheEngine() {
        boot(Machine.boot(TopologyLoader.load(machineWith("{ enabled: true }",
                endpoint("vendor: \"0x10de\"\ndevice: \"0x2330\"\nclass: \"0x030200\"", ""),
                endpoint("vendor: \"0x1da0\"\ndevice: \"0x0002\"\nclass: \"0x030000\"", ""),
                endpoint("vendor: \"0x1da0\"\ndevice: \"0x0001\"\nclass: \"0x120000\"", "model: gpu")),
                TopologyLoader.Format.YAML), Machine.Options.DEFAULT));
        long frames = machine.memory().allocatedFrames();
        DmaTestDriver driver = new DmaTestDriver(machine, Parameters.DEFAULTS, published);
        machine.devices().registerDriver(driver);

        PciFunction foreign = machine.pci().function("01:00.0");
        List<TraceEvent> failed = machine.tracer().select(e -> e.kind() == TraceKind.PROBE_FAILED);
        assertEquals(1, failed.size());
        assertEquals(foreign.name(), failed.getFirst().device());
        assertTrue(failed.getFirst().detail().contains("REG_ID reads 0xffffffffffffffff, not a copy engine"), failed.getFirst().detail());
        assertTrue(foreign.driver().isEmpty());
        assertFalse(foreign.busMasterEnabled());
        assertTrue(machine.pci().function("02:00.0").driver().isEmpty(), "a VGA controller (0x030000) is not claimed");
        assertEquals(List.of(machine.pci().function("03:00.0")), machine.devices().boundTo(driver), "matched by ID");
        assertEquals(1, published.live.size());
        assertTrue(published.live.getFirst().passed(), published.live.getFirst().transfers().toString());

        machine.devices().unregisterDriver(driver);
        assertEquals(frames, machine.memory().allocatedFrames());
        assertEquals(0, machine.activeDmaMappings());
    }

    @ParameterizedTest
    @ValueSource(strings = {"{ enabled: false }", "{ enabled: true, defaultDomain: identity }"})
    void withoutTranslationCopiesStillWorkAndTheFaultCheckIsSkipped(String iommu) {
        boot(Machine.boot(TopologyLoader.load(machineWith(iommu, COPY_ENGINE_GPU), TopologyLoader.Format.YAML),
                Machine.Options.DEFAULT));
        long frames = machine.memory().allocatedFrames();
        DmaTestDriver driver = new DmaTestDriver(machine, Parameters.DEFAULTS, published);
        machine.devices().registerDriver(driver);

        DmaTestResult r = published.live.getFirst();
        assertEquals(0, r.failures(), r.transfers().toString());
        assertEquals(6, r.tests());
        assertEquals(FaultCheck.Outcome.SKIPPED, r.faultCheck().outcome());
        assertTrue(r.transfers().stream().noneMatch(t -> t.operation().contains("stale")));
        assertTrue(machine.iommu().faults().isEmpty());
        assertTrue(machine.dmaDebug().reports().isEmpty(), machine.dmaDebug().reports().toString());
        machine.devices().unregisterDriver(driver);
        assertEquals(frames, machine.memory().allocatedFrames());
        assertEquals(0, machine.activeDmaMappings());
    }

    @Test
    void hotUnplugWhileBoundRunsRemove() {
        boot(Machine.bootDefault());
        long frames = machine.memory().allocatedFrames();
        DmaTestDriver driver = new DmaTestDriver(machine, Parameters.DEFAULTS, published);
        machine.devices().registerDriver(driver);
        assertEquals(1, published.live.size());

        machine.hotUnplug(machine.pci().function("0000:02:00.0")); // the downstream port above the GPU
        assertTrue(published.live.isEmpty(), "remove withdrew the result");
        assertEquals(0, machine.activeDmaMappings());
        assertEquals(frames, machine.memory().allocatedFrames());
        assertTrue(machine.dmaDebug().reports(DmaDebugReport.Kind.LEAK_AT_UNBIND).isEmpty());
        machine.devices().unregisterDriver(driver);
    }

    @Test
    void patternChecksCatchAFlippedByteAndAShiftedCopy() {
        var src = MemorySegment.ofArray(new byte[256]);
        var dst = MemorySegment.ofArray(new byte[256]);
        Patterns.fill(src, 16, 64, true);
        Patterns.fill(dst, 32, 64, false);
        assertEquals(64, Patterns.verifyDestination(dst, 16, 32, 64), "nothing copied: the whole area is wrong");
        MemorySegment.copy(src, 16, dst, 32, 64);
        assertEquals(0, Patterns.verifyDestination(dst, 16, 32, 64));
        dst.set(ValueLayout.JAVA_BYTE, 100, (byte) 0x7f);
        assertEquals(1, Patterns.verifyDestination(dst, 16, 32, 64), "a byte written past the area");
        MemorySegment.copy(src, 17, dst, 32, 64);
        assertTrue(Patterns.verifyDestination(dst, 16, 32, 64) > 60, "copied from the wrong offset");
        Patterns.fill(dst, 8, 8, false);
        dst.asSlice(8, 8).fill(SelfTest.FILL_BYTE);
        assertEquals(0, Patterns.verifyFill(dst, 8, 8, SelfTest.FILL_BYTE));
        assertEquals(1, Patterns.verifyFill(dst, 8, 9, SelfTest.FILL_BYTE));
    }
}
