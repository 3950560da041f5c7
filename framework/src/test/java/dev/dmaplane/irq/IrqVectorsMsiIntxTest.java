package dev.dmaplane.irq;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.ConfigSpace;
import dev.dmaplane.pci.Intx;
import dev.dmaplane.pci.Msi;
import dev.dmaplane.pci.Msix.Outcome;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciTopology;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.pci.TopologyLoader.Format;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.util.List;

import static dev.dmaplane.irq.IrqVectors.*;
import static dev.dmaplane.pci.PciRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * MSI and INTx as a driver gets them from {@code pci_alloc_irq_vectors} ({@code drivers/pci/msi/api.c}: MSI-X, then
 * {@code __pci_enable_msi_range}, then INTx when {@code min_vecs == 1 && dev->irq}), {@code msi_capability_init}
 * ({@code drivers/pci/msi/msi.c}: Multiple Message Enable is the count rounded up to a power of two, vectors masked
 * until requested, INTx disabled while MSI is on) and {@code /proc/interrupts}
 * ({@code Documentation/PCI/msi-howto.rst}), on three endpoints: MSI (8, 64-bit, maskable) beside MSI-X (4) at
 * 01:00.0, MSI only (4, 32-bit, not maskable) at 01:00.1, INTx only at 01:00.2.
 */
class IrqVectorsMsiIntxTest {
    private PciTopology t;
    private PciFunction both;
    private PciFunction msiOnly;
    private PciFunction intxOnly;

    @BeforeEach
    void load() {
        t = TopologyLoader.load(TestMachines.text(TestMachines.INTERRUPT_MODES), Format.YAML);
        both = t.function("01:00.0");
        msiOnly = t.function("01:00.1");
        intxOnly = t.function("01:00.2");
        for (PciFunction fn : List.of(both, msiOnly, intxOnly)) {
            fn.setMemorySpace(true);
            fn.setMaster(true);
        }
    }

    @AfterEach
    void close() {
        t.close();
    }

    private static void assertErrno(Errno errno, String mentions, Executable call) {
        ErrnoException e = assertThrows(ErrnoException.class, call);
        assertEquals(errno, e.errno(), e.getMessage());
        assertTrue(e.getMessage().contains(mentions), e.getMessage());
    }

    private static boolean interruptDisable(PciFunction fn) {
        return (fn.configSpace().command() & COMMAND_INTX_DISABLE) != 0;
    }

    /** MSI-X is preferred, then MSI, then INTx, each only when its flag allows it (api.c). */
    @Test
    void theTypesArePreferredMsixThenMsiThenIntx() {
        try (IrqVectors iv = IrqVectors.alloc(both, 1, 2, PCI_IRQ_MSIX | PCI_IRQ_MSI | PCI_IRQ_INTX)) {
            assertEquals(Type.MSIX, iv.type());
        }
        try (IrqVectors iv = IrqVectors.alloc(both, 1, 2, PCI_IRQ_MSI | PCI_IRQ_INTX)) {
            assertEquals(Type.MSI, iv.type());
        }
        try (IrqVectors iv = IrqVectors.alloc(both, 5, 8, PCI_IRQ_MSIX | PCI_IRQ_MSI)) {
            assertEquals(Type.MSI, iv.type(), "MSI-X has only 4 vectors, MSI has 8");
            assertEquals(8, iv.count());
        }
        try (IrqVectors iv = IrqVectors.alloc(both, 1, 1, PCI_IRQ_INTX)) {
            assertEquals(Type.INTX, iv.type());
            assertEquals(1, iv.count());
        }
        try (IrqVectors iv = IrqVectors.alloc(intxOnly, 1, 16, PCI_IRQ_MSIX | PCI_IRQ_MSI | PCI_IRQ_INTX)) {
            assertEquals(Type.INTX, iv.type());
            assertEquals(1, iv.count(), "INTx gives one vector whatever max_vecs asks");
        }
        assertEquals(0, both.devres().size());
        assertEquals(0, intxOnly.devres().size());
    }

    /** ENOSPC when none fits; INTx needs min_vecs 1 and a pin; the error is the last type's; nothing is left. */
    @Test
    void whenNothingFitsTheLastTypesErrorIsReturnedAndNothingIsHeld() {
        assertErrno(Errno.ENOSPC, "4 MSI vectors, fewer than min_vecs 5",
                () -> IrqVectors.alloc(msiOnly, 5, 8, PCI_IRQ_MSIX | PCI_IRQ_MSI | PCI_IRQ_INTX));
        assertErrno(Errno.ENOSPC, "INTx has one vector, fewer than min_vecs 2",
                () -> IrqVectors.alloc(intxOnly, 2, 2, PCI_IRQ_INTX));
        assertErrno(Errno.ENOSPC, "Interrupt Pin is 0",
                () -> IrqVectors.alloc(t.function("00:01.0"), 1, 1, PCI_IRQ_INTX));
        assertErrno(Errno.ENOSPC, "no MSI capability",
                () -> IrqVectors.alloc(intxOnly, 2, 2, PCI_IRQ_MSI | PCI_IRQ_INTX));
        both.setMemorySpace(false);
        assertErrno(Errno.EIO, "memory", () -> IrqVectors.alloc(both, 1, 1, PCI_IRQ_MSIX));
        try (IrqVectors iv = IrqVectors.alloc(both, 1, 1, PCI_IRQ_MSIX | PCI_IRQ_MSI)) {
            assertEquals(Type.MSI, iv.type(), "MSI lives in config space and needs no memory decoding");
            assertErrno(Errno.EBUSY, "already has its MSI vectors",
                    () -> IrqVectors.alloc(both, 1, 1, PCI_IRQ_MSIX | PCI_IRQ_MSI | PCI_IRQ_INTX));
        }
        for (PciFunction fn : List.of(both, msiOnly, intxOnly)) {
            assertEquals(0, fn.devres().size());
            assertTrue(IrqVectors.of(fn).isEmpty());
            assertTrue(fn.msi().flatMap(Msi::sink).isEmpty());
            assertTrue(fn.intx().flatMap(Intx::sink).isEmpty());
        }
        assertFalse(both.msi().orElseThrow().enabled());
    }

    /** The count is min(capable, max); Multiple Message Enable holds it rounded up to a power of two (msi.c). */
    @Test
    void msiEnablesTheCountRoundedUpToAPowerOfTwoAndDisablesIntx() {
        Msi msi = both.msi().orElseThrow();
        ConfigSpace cs = both.configSpace();
        try (IrqVectors iv = IrqVectors.alloc(both, 1, 3, PCI_IRQ_MSI)) {
            assertEquals(3, iv.count());
            assertTrue(msi.enabled());
            assertEquals(4, msi.enabledVectors());
            assertEquals(2 << 4, cs.read(msi.capability() + MSI_FLAGS, 2) & MSI_FLAGS_QSIZE);
            assertEquals((int) MSI_ADDRESS, cs.read(msi.capability() + MSI_ADDRESS_LO, 4));
            assertTrue(interruptDisable(both), "pci_intx_for_msi(dev, 0)");
            for (int v = 0; v < 8; v++) {
                assertTrue(msi.masked(v), "vector " + v + " masked until requested");
            }
            assertEquals(Outcome.PENDING, msi.raise(1));
            IrqTrigger trigger = new IrqTrigger();
            iv.requestTrigger(1, trigger, "eth0-rx");
            assertEquals(1, trigger.count(), "the pending message arrived on unmask");
            assertEquals(Outcome.DELIVERED, both.signal(1));
            assertEquals(2, iv.interrupts(1));
            assertEquals(Outcome.PENDING, msi.raise(3), "vector 3 is allotted by MME but not allocated, so masked");
            iv.free(1);
            assertTrue(msi.masked(1));
        }
        assertFalse(msi.enabled());
        assertFalse(interruptDisable(both), "pci_intx_for_msi(dev, 1) on release");
    }

    /** Without per-vector masking a message on an unrequested vector is counted unhandled; one beyond the count is ERR. */
    @Test
    void anUnmaskableMsiCountsWhatNobodyHandles() {
        Msi msi = msiOnly.msi().orElseThrow();
        try (IrqVectors iv = IrqVectors.alloc(msiOnly, 1, 3, PCI_IRQ_MSI)) {
            assertEquals(Outcome.DELIVERED, msi.raise(0));
            assertEquals(1, iv.unhandled(0));
            assertEquals(Outcome.DELIVERED, msi.raise(3), "vector 3 is allotted by MME, sent with data 3");
            assertEquals(1, iv.spurious());
            iv.request(2, v -> IrqReturn.HANDLED, null, "q2");
            msi.raise(2);
            assertEquals(1, iv.interrupts(2));
            assertEquals(0, iv.unhandled(2));
        }
    }

    /** INTx: pci_intx clears Interrupt Disable; each assertion runs the handler once (handle_fasteoi_irq). */
    @Test
    void intxRunsTheHandlerOnEachAssertion() {
        Intx intx = intxOnly.intx().orElseThrow();
        intxOnly.configSpace().write(COMMAND, 2, intxOnly.configSpace().command() | COMMAND_INTX_DISABLE);
        try (IrqVectors iv = IrqVectors.alloc(intxOnly, 1, 1, PCI_IRQ_INTX)) {
            assertFalse(interruptDisable(intxOnly));
            IrqTrigger trigger = new IrqTrigger();
            iv.requestTrigger(0, trigger, "legacy");
            assertEquals(Outcome.DELIVERED, intx.assertLine());
            intx.deassertLine();
            assertEquals(Outcome.DELIVERED, intxOnly.signal(0));
            assertEquals(2, trigger.count());
            assertEquals(2, iv.interrupts(0));
            assertErrno(Errno.EINVAL, "vector 1 is outside", () -> iv.request(1, v -> IrqReturn.HANDLED, null, "x"));
        }
        assertTrue(intx.sink().isEmpty());
        assertEquals(Outcome.DROPPED, intx.pulse(), "nobody listens after release");
    }

    /** {@code /proc/interrupts} names each line's chip and flow: PCI-MSIX/PCI-MSI edge, IO-APIC fasteoi. */
    @Test
    void procInterruptsLabelsEachLineWithItsType() {
        try (IrqVectors a = IrqVectors.alloc(both, 2, 2, PCI_IRQ_MSIX);
             IrqVectors b = IrqVectors.alloc(msiOnly, 1, 1, PCI_IRQ_MSI);
             IrqVectors c = IrqVectors.alloc(intxOnly, 1, 1, PCI_IRQ_INTX)) {
            a.requestTrigger(1, new IrqTrigger(), "x-msix");
            b.requestTrigger(0, new IrqTrigger(), "y-msi");
            c.requestTrigger(0, new IrqTrigger(), "z-intx");
            msiOnly.signal(0);
            intxOnly.signal(0);
            intxOnly.signal(0);
            assertEquals("""
                                CPU0
                       1:          0  PCI-MSIX-0000:01:00.0    1-edge      x-msix
                       0:          1  PCI-MSI-0000:01:00.1    0-edge      y-msi
                       0:          2  IO-APIC   16-fasteoi   z-intx
                     ERR:          0
                    """, IrqVectors.procInterrupts(List.of(both, msiOnly, intxOnly)));
        }
    }
}
