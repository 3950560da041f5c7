package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.dmaengine.DmaResult;
import dev.dmaplane.driver.dmatest.DmaTestResult;
import dev.dmaplane.driver.dmatest.FaultCheck;
import dev.dmaplane.driver.dmatest.Transfer;
import dev.dmaplane.driver.gpu.impl.GpuDriver;
import dev.dmaplane.driver.gpu.impl.GpuOptions;
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

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * dmatest as a dmaengine client ({@code drivers/dma/dmatest.c}, {@code Documentation/driver-api/dmaengine/client.rst})
 * on the default machine's GPU: the GPU model from the class path, the GPU driver bound to 0000:03:00.0 and offering
 * its copy-engine channel on the auxiliary device {@code gpu.dma.0} ({@code Documentation/driver-api/auxiliary_bus.rst}).
 */
class DmaTestDriverTest {
    static final String GPU = "0000:03:00.0";
    static final String AUX = "gpu.dma.0";

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

    Machine machine;
    final Published published = new Published();

    Machine boot(String machineText) {
        machine = Machine.boot(TopologyLoader.load(machineText, TopologyLoader.Format.YAML), Machine.Options.DEFAULT);
        return machine;
    }

    GpuDriver gpuDriver() {
        GpuDriver gpu = new GpuDriver(machine, GpuOptions.DEFAULT.withRingEntries(64));
        machine.devices().registerDriver(gpu);
        return gpu;
    }

    DmaTestDriver dmatest() {
        DmaTestDriver driver = new DmaTestDriver(machine, Parameters.DEFAULTS, published);
        machine.devices().registerDriver(driver);
        return driver;
    }

    Device aux() {
        return machine.devices().devices().stream().filter(d -> d.name().equals(AUX)).findFirst()
                .orElseThrow(() -> new AssertionError("no " + AUX));
    }

    @AfterEach
    void close() {
        if (machine != null) {
            machine.close();
        }
    }

    @Test
    void selfTestRunsOnTheGpuChannelAndRemoveReleasesEverything() {
        boot(TopologyLoader.defaultMachineText());
        GpuDriver gpuDriver = gpuDriver();
        PciFunction gpu = machine.pci().function(GPU);
        long frames = machine.memory().allocatedFrames();
        long mappings = machine.activeDmaMappings();
        long seq = machine.tracer().lastSeq();
        DmaTestDriver driver = dmatest();

        assertEquals(List.of(aux()), machine.devices().boundTo(driver), "dmatest claims the GPU driver's channel only");
        assertEquals(List.of(gpu), machine.devices().boundTo(gpuDriver), "the GPU driver keeps the PCI function");
        DmaTestResult r = published.live.getFirst();
        assertEquals(GPU, r.device(), "the channel's device, whose IOMMU domain the buffers are mapped in");
        assertEquals(6, r.tests(), "four copies, a fill, a copy after the fault");
        assertEquals(0, r.failures(), r.transfers().toString());
        assertTrue(r.passed());
        assertEquals(-1, r.ringIova(), "a client has no ring");
        assertTrue(r.bytesCopied() > 0 && r.bytesFilled() > 0, r.summary());
        assertEquals((5 * 2 + 1 + 1) * 16384, r.bytesVerified(), "source and destination of 5 copies, the fill, the faulted buffer");
        assertEquals(r.transfers().stream().filter(t -> t.operation().startsWith("copy") && t.ok()).mapToLong(Transfer::length).sum(),
                r.bytesCopied());

        FaultCheck f = r.faultCheck();
        assertEquals(FaultCheck.Outcome.PASSED, f.outcome(), f.detail());
        assertEquals(DmaResult.WRITE_FAILED.ordinal(), f.status());
        assertEquals("WRITE_FAILED", Transfer.statusName(f.status()));
        assertEquals(f.iova(), f.faultAddress());
        assertEquals(0, f.bytesChanged());
        List<IommuFault> faults = machine.iommu().faults();
        assertEquals(1, faults.size(), faults.toString());
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
        assertEquals(5 * 2 + 1 + 2, maps.size(), "two per copy, the fill, source and destination of the stale copy");
        assertEquals(mappings, machine.activeDmaMappings(), "while bound none of dmatest's mappings stays");
        assertEquals(frames + 2 * 4, machine.memory().allocatedFrames(), "two 16 KiB buffers");

        machine.devices().unregisterDriver(driver);
        assertTrue(aux().driver().isEmpty());
        assertEquals(gpuDriver, gpu.driver().orElseThrow(), "unloading dmatest leaves the GPU driver bound");
        assertEquals(mappings, machine.activeDmaMappings());
        assertEquals(frames, machine.memory().allocatedFrames());
        assertTrue(published.live.isEmpty());
        assertEquals(1, published.withdrawn);
        assertTrue(machine.dmaDebug().reports(DmaDebugReport.Kind.LEAK_AT_UNBIND).isEmpty());
        assertTrue(driver.results().isEmpty());
    }

    @Test
    void bindsToTheChannelWhenTheGpuDriverOffersItAndLeavesWithIt() {
        boot(TopologyLoader.defaultMachineText());
        long frames = machine.memory().allocatedFrames();
        DmaTestDriver driver = dmatest();
        assertEquals(List.of(), machine.devices().boundTo(driver), "no channel yet: the PCI function is not dmatest's");
        assertTrue(machine.pci().function(GPU).driver().isEmpty());

        GpuDriver gpuDriver = gpuDriver();
        assertEquals(List.of(aux()), machine.devices().boundTo(driver), "the channel's aux device came and dmatest bound");
        assertEquals(1, published.live.size());
        assertTrue(published.live.getFirst().passed(), published.live.getFirst().transfers().toString());

        machine.devices().unregisterDriver(gpuDriver);
        assertTrue(published.live.isEmpty(), "unbinding the GPU removed the aux device, and dmatest with it");
        assertEquals(List.of(), machine.devices().boundTo(driver));
        assertEquals(0, machine.activeDmaMappings());
        assertEquals(frames, machine.memory().allocatedFrames());
        assertTrue(machine.dmaDebug().reports(DmaDebugReport.Kind.LEAK_AT_UNBIND).isEmpty());
    }

    @ParameterizedTest
    @ValueSource(strings = {"enabled: false", "defaultDomain: identity"})
    void withoutTranslationCopiesStillWorkAndTheFaultCheckIsSkipped(String iommu) {
        String text = TopologyLoader.defaultMachineText();
        String changed = iommu.startsWith("enabled") ? text.replace("enabled: true", iommu)
                : text.replace("defaultDomain: dma", iommu);
        assertFalse(changed.equals(text), "the machine file changed");
        boot(changed);
        gpuDriver();
        long frames = machine.memory().allocatedFrames();
        long mappings = machine.activeDmaMappings();
        DmaTestDriver driver = dmatest();

        DmaTestResult r = published.live.getFirst();
        assertEquals(0, r.failures(), r.transfers().toString());
        assertEquals(6, r.tests());
        assertEquals(FaultCheck.Outcome.SKIPPED, r.faultCheck().outcome());
        assertTrue(r.transfers().stream().noneMatch(t -> t.operation().contains("stale")));
        assertTrue(machine.iommu().faults().isEmpty());
        assertTrue(machine.dmaDebug().reports().isEmpty(), machine.dmaDebug().reports().toString());
        machine.devices().unregisterDriver(driver);
        assertEquals(frames, machine.memory().allocatedFrames());
        assertEquals(mappings, machine.activeDmaMappings());
    }

    @Test
    void hotUnplugWhileBoundRunsRemove() {
        boot(TopologyLoader.defaultMachineText());
        long frames = machine.memory().allocatedFrames();
        gpuDriver();
        DmaTestDriver driver = dmatest();
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
