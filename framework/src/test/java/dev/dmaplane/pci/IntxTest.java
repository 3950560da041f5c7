package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Msix.Outcome;
import dev.dmaplane.pci.TopologyLoader.Format;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.dmaplane.pci.Machines.*;
import static dev.dmaplane.pci.PciRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The INTx line as PCI Local Bus Spec 6.2.2 describes it (Command Interrupt Disable bit 10, Status Interrupt Status
 * bit 3, Interrupt Pin) and 6.8 (no INTx while MSI or MSI-X is enabled), and {@link PciFunction#signal}, which
 * raises in the mode the driver enabled as {@code Documentation/PCI/msi-howto.rst} describes the three modes.
 */
class IntxTest {
    private final AtomicInteger interrupts = new AtomicInteger();
    private final Intx.Sink pin = interrupts::incrementAndGet;
    private PciTopology t;
    private PciFunction fn;
    private Intx intx;

    @BeforeEach
    void load() {
        t = TopologyLoader.load(rootPortWith("", endpoint("01:00.0", "msi: { vectors: 4 }\nmsix: { vectors: 4 }")),
                Format.YAML);
        fn = t.function("01:00.0");
        intx = fn.intx().orElseThrow();
        intx.attach(pin);
    }

    @AfterEach
    void close() {
        t.close();
    }

    private boolean interruptStatus() {
        return (fn.configSpace().status() & STATUS_INTERRUPT) != 0;
    }

    private void command(int bit, boolean on) {
        int cmd = fn.configSpace().command();
        fn.configSpace().write(COMMAND, 2, on ? cmd | bit : cmd & ~bit);
    }

    /** An endpoint is wired to INTA# (Interrupt Pin 1); a bridge here has no pin and no INTx (6.2.4). */
    @Test
    void anEndpointHasInterruptPinA() {
        assertEquals(1, intx.pin());
        assertTrue(t.function("00:01.0").intx().isEmpty());
    }

    /** Interrupt Status follows the line; each assertion edge delivers once (6.2.2, level-triggered INTx). */
    @Test
    void interruptStatusFollowsTheLineAndEachEdgeDeliversOnce() {
        assertFalse(interruptStatus());
        assertEquals(Outcome.DELIVERED, intx.assertLine());
        assertTrue(interruptStatus());
        assertTrue(intx.asserted());
        assertEquals(Outcome.PENDING, intx.assertLine(), "still asserted: no new edge");
        assertEquals(1, interrupts.get());
        intx.deassertLine();
        assertFalse(interruptStatus());
        assertEquals(Outcome.DELIVERED, intx.assertLine());
        assertEquals(2, interrupts.get());
        assertEquals(2, intx.delivered());
        fn.configSpace().write(STATUS, 2, STATUS_INTERRUPT);
        assertTrue(interruptStatus(), "Interrupt Status is read-only to software");
    }

    /** Interrupt Disable gates the line but not Interrupt Status; a line still asserted delivers when it clears. */
    @Test
    void interruptDisableHoldsTheLineUntilCleared() {
        command(COMMAND_INTX_DISABLE, true);
        assertEquals(Outcome.PENDING, intx.assertLine());
        assertTrue(interruptStatus(), "Interrupt Status is set whatever Interrupt Disable says");
        assertEquals(0, interrupts.get());
        command(COMMAND_INTX_DISABLE, false);
        assertEquals(1, interrupts.get(), "the asserted line delivers once the gate opens");
        command(COMMAND_MEMORY, true);
        assertEquals(1, interrupts.get(), "an unrelated write is no new edge");
        command(COMMAND_INTX_DISABLE, true);
        intx.deassertLine();
        command(COMMAND_INTX_DISABLE, false);
        assertEquals(1, interrupts.get(), "a line deasserted while gated leaves nothing");
    }

    /** While MSI or MSI-X is enabled the function must not use INTx (PCI Local Bus Spec 6.8). */
    @Test
    void msiOrMsixEnabledGatesTheLine() {
        int msi = fn.msi().orElseThrow().capability() + MSI_FLAGS;
        fn.configSpace().write(msi, 2, MSI_FLAGS_ENABLE);
        assertEquals(Outcome.PENDING, intx.assertLine());
        fn.configSpace().write(msi, 2, 0);
        assertEquals(1, interrupts.get());
        intx.deassertLine();
        int msix = fn.configSpace().findCapability(CAP_ID_MSIX).orElseThrow() + MSIX_FLAGS;
        fn.configSpace().write(msix, 2, MSIX_FLAGS_ENABLE);
        assertEquals(Outcome.DROPPED, intx.pulse(), "a pulse while gated leaves nothing");
        assertFalse(interruptStatus());
        assertEquals(1, interrupts.get());
        assertEquals(1, intx.dropped());
    }

    /** Without a sink an assertion reaches nobody; a second sink is EBUSY. */
    @Test
    void sinksAttachOnceAndNoSinkDrops() {
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, () -> intx.attach(() -> { })).errno());
        intx.detach(pin);
        assertEquals(Outcome.DROPPED, intx.assertLine());
        assertEquals(1, intx.dropped());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> intx.detach(pin)).errno());
    }

    /** signal raises MSI-X if enabled, else MSI, else pulses INTx (msi-howto.rst; MSI-X wins both enabled). */
    @Test
    void signalUsesTheModeTheDriverEnabled() {
        List<String> got = new ArrayList<>();
        fn.msi().orElseThrow().attach((v, a, d) -> got.add("msi " + v));
        fn.msix().orElseThrow().attach((v, a, d) -> got.add("msix " + v));
        fn.setMaster(true);
        assertEquals(Outcome.DELIVERED, fn.signal(0));
        assertEquals(1, interrupts.get());
        assertFalse(intx.asserted(), "signal on INTx is a pulse");
        ErrnoException e = assertThrows(ErrnoException.class, () -> fn.signal(1));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("vector 1"), e.getMessage());

        int msi = fn.msi().orElseThrow().capability() + MSI_FLAGS;
        fn.configSpace().write(msi, 2, (2 << 4) | MSI_FLAGS_ENABLE);
        assertEquals(Outcome.DELIVERED, fn.signal(3));
        int msix = fn.configSpace().findCapability(CAP_ID_MSIX).orElseThrow() + MSIX_FLAGS;
        fn.configSpace().write(msix, 2, MSIX_FLAGS_ENABLE);
        assertEquals(Outcome.PENDING, fn.signal(2), "MSI-X vectors start masked");
        assertEquals(List.of("msi 3"), got);
        assertEquals(1, interrupts.get());
    }

    /** A function whose Interrupt Pin is 0 has nothing to signal with MSI and MSI-X off. */
    @Test
    void signalWithoutAPinIsEinval() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> t.function("00:01.0").signal(0));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("Interrupt Pin is 0"), e.getMessage());
    }
}
