package dev.dmaplane.hw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.impl.CopyEngineModel;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRegs;
import dev.dmaplane.pci.PciReset;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.testing.CopyEngineClient;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Resets as the hardware sees them: Function Level Reset (PCIe Base Spec 6.6.2, {@code pcie_flr} in
 * {@code drivers/pci/pci.c}: Initiate FLR reads as zero, registers return to power-on values, MSI-X vectors masked),
 * {@code pci_reset_function}'s save/FLR/restore, and a secondary bus reset ({@code pci_reset_secondary_bus})
 * reaching every function below the bridge; the device model resets its own state with them.
 */
class ResetTest {
    private final List<String> resets = new ArrayList<>();
    private final Machine machine = Machine.boot(TopologyLoader.load(TestMachines.text(TestMachines.DEFAULT_COPYENGINE), TopologyLoader.Format.YAML),
            Machine.Options.DEFAULT.withClassPathModels(false));
    private final PciFunction gpu = machine.pci().function("03:00.0");

    @AfterEach
    void close() {
        machine.close();
    }

    /** The copy engine, wrapped to record the resets it sees. */
    private DeviceModel loadCopyEngineTracingResets() {
        DeviceModel inner = new CopyEngineModel();
        DeviceModel tracing = new DeviceModel() {
            @Override
            public String name() {
                return inner.name();
            }

            @Override
            public ModelDevice realize(ModelContext ctx) {
                ModelDevice dev = inner.realize(ctx);
                return kind -> {
                    resets.add(ctx.function().bdf() + " " + kind);
                    dev.reset(kind);
                };
            }
        };
        machine.addModel(tracing);
        return tracing;
    }

    @Test
    void flrReturnsRegistersToPowerOnAndResetsTheModel() {
        loadCopyEngineTracingResets();
        CopyEngineClient ce = new CopyEngineClient(gpu);
        assertNotEquals(0, ce.read(REG_RING_BASE));
        long bar0 = gpu.bar(0).orElseThrow().address();
        assertTrue(gpu.hasFlr());

        gpu.flr();

        assertEquals(List.of(gpu.bdf() + " FLR"), resets);
        int exp = gpu.configSpace().findCapability(PciRegs.CAP_ID_EXP).orElseThrow();
        assertEquals(0, gpu.configSpace().read(exp + PciRegs.EXP_DEVCTL, 2) & PciRegs.EXP_DEVCTL_BCR_FLR,
                "Initiate FLR always reads as zero");
        assertEquals(0, gpu.configSpace().command(), "decoding and bus mastering are off");
        assertEquals(0, gpu.bar(0).orElseThrow().address(), "BARs are unassigned after FLR");
        assertEquals(-1L, gpu.bar(0).orElseThrow().mmio().read(REG_RING_BASE, 8), "nothing decodes until restored");
        gpu.configSpace().write(PciRegs.BASE_ADDRESS_0, 4, (int) bar0);
        gpu.configSpace().write(PciRegs.BASE_ADDRESS_0 + 4, 4, (int) (bar0 >>> 32));
        gpu.setMemorySpace(true);
        assertEquals(0, gpu.bar(0).orElseThrow().mmio().read(REG_RING_BASE, 8), "the engine itself was reset");
        assertEquals(0, gpu.bar(0).orElseThrow().mmio().read(REG_CTRL, 8));
    }

    @Test
    void resetFunctionKeepsTheConfigurationAndTheInterruptVectors() {
        loadCopyEngineTracingResets();
        IrqTrigger done = new IrqTrigger();
        CopyEngineClient ce = new CopyEngineClient(gpu);
        try (IrqVectors iv = IrqVectors.alloc(gpu, 1, 1, IrqVectors.PCI_IRQ_MSIX)) {
            iv.requestTrigger(IRQ_VECTOR, done, "ce");
            long bar0 = gpu.bar(0).orElseThrow().address();
            int command = gpu.configSpace().command();

            gpu.resetFunction();

            assertEquals(List.of(gpu.bdf() + " FLR"), resets);
            assertEquals(bar0, gpu.bar(0).orElseThrow().address());
            assertEquals(command, gpu.configSpace().command());
            assertEquals(0, ce.read(REG_RING_BASE), "the device starts afresh");
            assertTrue(gpu.msix().orElseThrow().enabled());
            assertFalse(gpu.msix().orElseThrow().masked(IRQ_VECTOR), "the vector's table entry was restored");
            assertEquals(ST_BAD_DESC, new CopyEngineClient(gpu).submit(0, 0, 0, FLAG_INTERRUPT));
            assertEquals(1, done.count(), "interrupts reach the handler after the reset");
        }
    }

    @Test
    void aSecondaryBusResetReachesEveryFunctionBelowTheBridge() {
        loadCopyEngineTracingResets();
        PciFunction port = gpu.upstreamBridge().orElseThrow();
        new CopyEngineClient(gpu);
        port.resetSecondaryBus();
        assertEquals(List.of(gpu.bdf() + " BUS"), resets);
        assertEquals(0, gpu.bar(0).orElseThrow().address());
        assertEquals(0, port.configSpace().read(PciRegs.BRIDGE_CONTROL, 2) & PciRegs.BRIDGE_CTL_BUS_RESET,
                "the bridge deasserts the reset again");
        assertNotEquals(0, port.configSpace().command(), "the bridge itself keeps its configuration");
    }

    /** {@code pci_reset_bus}: the secondary bus reset between {@code pci_bus_save_and_disable_locked} and restore. */
    @Test
    void resetBusKeepsTheConfigurationOfEveryFunctionBelow() {
        loadCopyEngineTracingResets();
        CopyEngineClient ce = new CopyEngineClient(gpu);
        long bar0 = gpu.bar(0).orElseThrow().address();
        int command = gpu.configSpace().command();

        assertEquals(List.of(gpu), gpu.resetBus());

        assertEquals(List.of(gpu.bdf() + " BUS"), resets);
        assertEquals(bar0, gpu.bar(0).orElseThrow().address());
        assertEquals(command, gpu.configSpace().command());
        assertEquals(0, ce.read(REG_RING_BASE), "the device starts afresh");
        PciFunction rootPort = machine.pci().function("00:01.0");
        assertEquals(Errno.ENOTTY, assertThrows(ErrnoException.class, rootPort::resetBus).errno(), "a root bus");
    }

    @Test
    void resetsThatCannotHappenAreErrnos() {
        PciFunction port = gpu.upstreamBridge().orElseThrow();
        ErrnoException noFlr = assertThrows(ErrnoException.class, port::flr);
        assertEquals(Errno.ENOTTY, noFlr.errno());
        assertTrue(noFlr.getMessage().contains(port.bdf().toString()), noFlr.getMessage());
        assertEquals(Errno.ENOTTY, assertThrows(ErrnoException.class, port::resetFunction).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, gpu::resetSecondaryBus).errno());
        ErrnoException absent = assertThrows(ErrnoException.class, gpu::flr);
        assertEquals(Errno.ENODEV, absent.errno(), "the GPU's model is not loaded");
        assertTrue(absent.getMessage().contains("not loaded"), absent.getMessage());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> gpu.addResetListener(null)).errno());
    }

    @Test
    void aModelThatLeftIsNotToldOfResets() {
        DeviceModel loaded = loadCopyEngineTracingResets();
        assertTrue(machine.removeModel(loaded));
        machine.addModel(new DeviceModel() {
            @Override
            public String name() {
                return "copyengine";
            }

            @Override
            public ModelDevice realize(ModelContext ctx) {
                return kind -> resets.add("second " + kind);
            }
        });
        gpu.flr();
        assertEquals(List.of("second " + PciReset.FLR), resets);
    }
}
