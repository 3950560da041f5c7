package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.driver.dmatest.DmaTestResult;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.irq.IrqReturn;
import dev.dmaplane.irq.IrqTrigger;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.Msix;
import dev.dmaplane.pci.PciFunction;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.time.Duration;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * dmatest taking the copy engine's completion interrupt instead of polling, as {@code drivers/dma/dmatest.c} waits
 * for its callback unless {@code polled} is set: one MSI-X vector from {@code pci_alloc_irq_vectors} with a threaded
 * handler ({@code request_threaded_irq}, {@code kernel/irq/manage.c}), freed with the driver.
 */
class DmaTestInterruptTest {
    private static final String IRQ_THREAD = "irq/" + IRQ_VECTOR + "-" + DmaTestDriver.NAME;

    private final Machine machine = Machine.bootDefault();
    private final PciFunction gpu = machine.pci().function(DmaTestDriverTest.GPU);
    private final Msix msix = gpu.msix().orElseThrow();

    @AfterEach
    void close() {
        machine.close();
    }

    private static boolean threadAlive(String name) {
        return Thread.getAllStackTraces().keySet().stream().anyMatch(t -> t.getName().equals(name) && t.isAlive());
    }

    @Test
    void everyDescriptorCompletesByInterruptAndRemoveFreesTheVectorAndItsThread() {
        DmaTestDriverTest.Published published = new DmaTestDriverTest.Published();
        DmaTestDriver driver = new DmaTestDriver(machine, Parameters.DEFAULTS, published);
        machine.devices().registerDriver(driver);

        DmaTestResult r = published.live.getFirst();
        assertTrue(r.passed(), r.transfers().toString());
        IrqVectors irqs = driver.bound(gpu).orElseThrow().irqVectors().orElseThrow();
        assertEquals(1, irqs.count());
        assertEquals(r.transfers().size(), irqs.interrupts(IRQ_VECTOR),
                "one completion interrupt per descriptor, the faulted one included");
        assertEquals(0, irqs.unhandled(IRQ_VECTOR));
        assertTrue(irqs.procInterrupts().contains("PCI-MSIX-" + gpu.bdf() + "    0-edge      dmatest"), irqs.procInterrupts());
        assertTrue(msix.enabled());
        assertFalse(msix.masked(IRQ_VECTOR));
        assertTrue(threadAlive(IRQ_THREAD));

        machine.devices().unregisterDriver(driver);
        assertFalse(threadAlive(IRQ_THREAD), "free_irq stopped the handler thread");
        assertFalse(msix.enabled(), "pci_free_irq_vectors cleared MSI-X Enable");
        assertTrue(msix.masked(IRQ_VECTOR));
        ErrnoException e = assertThrows(ErrnoException.class, () -> irqs.request(IRQ_VECTOR, v -> IrqReturn.HANDLED, null, "x"));
        assertEquals(Errno.EINVAL, e.errno());
        assertEquals(0, gpu.devres().size(), "nothing left for devres");
    }

    @Test
    void polledTakesNoVectorAndStillPasses() {
        DmaTestDriverTest.Published published = new DmaTestDriverTest.Published();
        DmaTestDriver driver = new DmaTestDriver(machine, Parameters.DEFAULTS.withPolled(true), published);
        machine.devices().registerDriver(driver);

        DmaTestResult r = published.live.getFirst();
        assertTrue(r.passed(), r.transfers().toString());
        assertTrue(driver.bound(gpu).orElseThrow().irqVectors().isEmpty());
        assertFalse(msix.enabled());
        assertEquals(0, msix.delivered() + msix.dropped(), "polled descriptors ask for no interrupt");
        machine.devices().unregisterDriver(driver);
    }

    @Test
    void aMissingCompletionInterruptTimesOutInsteadOfHanging() {
        gpu.setMemorySpace(true);
        gpu.setMaster(true);
        Bar.Mmio regs = gpu.bar(0).orElseThrow().mmio();
        IrqTrigger never = new IrqTrigger();
        try (CopyEngineChannel ch = CopyEngineChannel.open(regs, gpu.dma(), 4, Duration.ofMillis(50), never)) {
            regs.write(REG_CTRL, 8, 0); // a disabled engine completes nothing and raises nothing
            ErrnoException e = assertThrows(ErrnoException.class, () -> ch.submit(0x11, ch.ringIova(), 8, FLAG_FILL, 1));
            assertEquals(Errno.ETIMEDOUT, e.errno());
            assertTrue(e.getMessage().contains("no completion interrupt"), e.getMessage());
        }
    }
}
