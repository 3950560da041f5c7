package dev.dmaplane.machine;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.Msix;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.testing.CopyEngineClient;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The copy engine's completion interrupt: a descriptor with {@code FLAG_INTERRUPT} raises MSI-X vector 0 of the GPU
 * function once done, as IOAT's per-descriptor interrupt-enable does ({@code drivers/dma/ioat/dma.c}), under the
 * MSI-X masking rules of PCI Express Base Spec 7.7.2 ({@code Documentation/PCI/msi-howto.rst}).
 */
class CopyEngineInterruptTest {
    private final Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    private final PciFunction gpu = machine.pci().function("03:00.0");

    @AfterEach
    void close() {
        machine.close();
    }

    @Test
    void descriptorAskingForAnInterruptRaisesVectorZeroOnceDone() {
        HostMemory mem = machine.memory();
        long page = mem.allocPages(1) << HostMemory.PAGE_SHIFT;
        IrqTrigger done = new IrqTrigger();
        try (CopyEngineClient ce = new CopyEngineClient(gpu);
             IrqVectors iv = IrqVectors.alloc(gpu, 1, 1, IrqVectors.PCI_IRQ_MSIX)) {
            iv.requestTrigger(IRQ_VECTOR, done, "copyengine");
            long d = gpu.dma().mapSingle(page, 4096, DmaDirection.FROM_DEVICE);

            assertEquals(ST_OK, ce.submit(0x5A, d, 64, FLAG_FILL));
            assertEquals(0, done.count(), "no interrupt unless the descriptor asks for one");

            assertEquals(ST_OK, ce.submit(0x5A, d, 64, FLAG_FILL | FLAG_INTERRUPT));
            assertEquals(1, done.count());
            assertEquals(1, iv.interrupts(IRQ_VECTOR));

            assertEquals(ST_OK, ce.submit(0, d, 4096, FLAG_INTERRUPT | FLAG_FILL));
            assertEquals(2, done.count());
            gpu.dma().unmapSingle(d, 4096, DmaDirection.FROM_DEVICE);
        }
    }

    @Test
    void faultedDescriptorStillRaisesItsInterrupt() {
        IrqTrigger done = new IrqTrigger();
        try (CopyEngineClient ce = new CopyEngineClient(gpu);
             IrqVectors iv = IrqVectors.alloc(gpu, 1, 1, IrqVectors.PCI_IRQ_MSIX)) {
            iv.requestTrigger(IRQ_VECTOR, done, "copyengine");
            long unmapped = 1L << 20;
            assertEquals(ST_WRITE_FAULT, ce.submit(0x11, unmapped, 64, FLAG_FILL | FLAG_INTERRUPT));
            assertEquals(1, done.count(), "the waiting driver wakes up to see the fault");
            assertEquals(1, iv.interrupts(IRQ_VECTOR));
        }
    }

    @Test
    void maskedVectorKeepsTheInterruptPendingUntilRequested() {
        IrqTrigger done = new IrqTrigger();
        try (CopyEngineClient ce = new CopyEngineClient(gpu);
             IrqVectors iv = IrqVectors.alloc(gpu, 1, 1, IrqVectors.PCI_IRQ_MSIX)) {
            Msix msix = gpu.msix().orElseThrow();
            assertEquals(ST_BAD_DESC, ce.submit(0, 0, 0, FLAG_INTERRUPT));
            assertTrue(msix.pending(IRQ_VECTOR), "allocated vectors stay masked until requested");
            assertEquals(0, iv.interrupts(IRQ_VECTOR));
            iv.requestTrigger(IRQ_VECTOR, done, "copyengine");
            assertFalse(msix.pending(IRQ_VECTOR));
            assertEquals(1, done.count());
        }
    }
}
