package dev.dmaplane.hw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.Msix;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRegs;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.testing.CopyEngineClient;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Power states as PCI Bus Power Management 1.2 defines them (5.6.2 PMCSR, 5.4 D3hot; {@code pci_set_power_state} in
 * {@code drivers/pci/pci.c}): in D3hot a function answers config requests only, so its BARs read all-ones, it
 * masters no DMA and sends no MSI-X message; back in D0 with No_Soft_Reset it resumes with its state; a write of a
 * state it does not support changes nothing.
 */
class PowerStateTest {
    private final Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    private final PciFunction gpu = machine.pci().function("03:00.0");
    private final int pmcsr = gpu.configSpace().findCapability(PciRegs.CAP_ID_PM).orElseThrow() + PciRegs.PM_CTRL;

    @AfterEach
    void close() {
        machine.close();
    }

    @Test
    void d3hotSilencesTheFunctionAndD0BringsItBackAsItWas() {
        CopyEngineClient ce = new CopyEngineClient(gpu);
        long ring = ce.read(REG_RING_BASE);
        gpu.setPowerState(true);
        assertTrue(gpu.configSpace().inD3hot());
        assertEquals(3, gpu.configSpace().read(pmcsr, 2) & PciRegs.PM_CTRL_STATE_MASK);
        assertEquals(-1L, gpu.bar(0).orElseThrow().mmio().read(REG_RING_BASE, 8), "no memory decoding in D3hot");
        assertFalse(gpu.busMasterEnabled(), "no DMA in D3hot");
        assertEquals(Msix.Outcome.DROPPED, gpu.msix().orElseThrow().raise(0));
        assertNotEquals(0, gpu.configSpace().command() & PciRegs.COMMAND_MASTER, "the Command register itself is kept");

        gpu.setPowerState(false);
        assertFalse(gpu.configSpace().inD3hot());
        assertEquals(ring, ce.read(REG_RING_BASE), "No_Soft_Reset: the device kept its state");
        assertTrue(gpu.busMasterEnabled());
    }

    @Test
    void unsupportedStatesAreIgnored() {
        gpu.configSpace().write(pmcsr, 2, 1);
        assertEquals(0, gpu.configSpace().read(pmcsr, 2) & PciRegs.PM_CTRL_STATE_MASK, "D1 is not supported");
        gpu.setPowerState(true);
        gpu.configSpace().write(pmcsr, 2, 2);
        assertEquals(3, gpu.configSpace().read(pmcsr, 2) & PciRegs.PM_CTRL_STATE_MASK, "D2 neither: still D3hot");
    }

    @Test
    void anFlrReturnsToD0() {
        gpu.setPowerState(true);
        gpu.flr();
        assertFalse(gpu.configSpace().inD3hot());
    }

    @Test
    void noPowerStateForAbsentHardware() {
        Machine bare = Machine.boot(TopologyLoader.load(TestMachines.text(TestMachines.DEFAULT_COPYENGINE), TopologyLoader.Format.YAML),
                Machine.Options.DEFAULT.withClassPathModels(false));
        try (bare) {
            PciFunction absent = bare.pci().function("03:00.0");
            assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> absent.setPowerState(true)).errno());
        }
    }
}
