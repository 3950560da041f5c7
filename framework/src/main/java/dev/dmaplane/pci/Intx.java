package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Msix.Outcome;
import org.osgi.annotation.versioning.ConsumerType;

import java.util.Optional;
import java.util.OptionalInt;

import static dev.dmaplane.pci.PciRegs.*;

/**
 * A function's legacy INTx line (PCI Local Bus Spec 2.2.6 and 6.2.2): the Interrupt Pin it is wired to, Status
 * Interrupt Status following the line, and Command Interrupt Disable gating it.
 * <p>
 * The line is level-triggered: the device {@linkplain #assertLine asserts} it while its cause stands and
 * {@linkplain #deassertLine deasserts} it when the driver cleared the cause. The interrupt controller sees the line
 * only while Interrupt Disable is clear and neither MSI nor MSI-X is enabled (a function must not use INTx then,
 * PCI Local Bus Spec 6.8); the model delivers once on each rising edge of that gated level, so an assertion
 * delivers at once when the gate is open, and a line still asserted when the gate opens (Interrupt Disable cleared,
 * MSI disabled) delivers then. The sink is called outside this object's lock; the lock is taken before the config
 * space's.
 */
public final class Intx {
    /** The interrupt controller pin the line is routed to (an IO-APIC input, {@code pdev->irq}). */
    @ConsumerType
    public interface Sink {
        /** The function's line went active with the gate open: the controller runs the line's handlers. */
        void interrupt();
    }

    private final String owner;
    private final ConfigSpace config;
    private final int pin;
    private final int msiFlags;
    private final int msixFlags;
    private final SinkSlot<Sink> slot;
    private boolean asserted;
    /** Whether the controller sees the line active: asserted with the gate open, as last evaluated. */
    private boolean seen;

    private Intx(String owner, ConfigSpace config, int pin) {
        this.owner = owner;
        this.slot = new SinkSlot<>(owner, "INTx");
        this.config = config;
        this.pin = pin;
        OptionalInt msi = config.findCapability(CAP_ID_MSI);
        OptionalInt msix = config.findCapability(CAP_ID_MSIX);
        this.msiFlags = msi.isPresent() ? msi.getAsInt() + MSI_FLAGS : -1;
        this.msixFlags = msix.isPresent() ? msix.getAsInt() + MSIX_FLAGS : -1;
    }

    /**
     * The INTx line of the function with config space {@code config}, or empty if its Interrupt Pin is 0 (none); it
     * follows Interrupt Disable and the MSI and MSI-X Enable bits from now on.
     */
    static Optional<Intx> of(String owner, ConfigSpace config) {
        int pin = config.read(INTERRUPT_PIN, 1);
        if (pin == 0) {
            return Optional.empty();
        }
        Intx i = new Intx(owner, config, pin);
        config.addWriteListener((offset, size) -> i.reevaluate());
        return Optional.of(i);
    }

    /** The Interrupt Pin: 1..4 for INTA#..INTD#. */
    public int pin() {
        return pin;
    }

    /** Whether the device holds its line asserted (what Status Interrupt Status reports). */
    public synchronized boolean asserted() {
        return asserted;
    }

    /** Assertions the controller received. */
    public long delivered() {
        return slot.delivered();
    }

    /** Assertions nothing received: no sink attached, or a pulse while the line was gated. */
    public long dropped() {
        return slot.dropped();
    }

    /**
     * Attaches the interrupt controller pin that receives this line.
     *
     * @throws ErrnoException {@code EINVAL} for a null sink, {@code EBUSY} if another sink is attached
     */
    public void attach(Sink s) {
        slot.attach(s);
    }

    /** The attached interrupt controller pin, if any. */
    public Optional<Sink> sink() {
        return slot.current();
    }

    /**
     * Detaches {@code s}.
     *
     * @throws ErrnoException {@code EINVAL} if {@code s} is not the attached sink
     */
    public void detach(Sink s) {
        slot.detach(s);
    }

    /**
     * Asserts the line and sets Interrupt Status. Delivered if this is a rising edge with the gate open; pending if
     * the line is gated (or was already asserted) and waits for the gate to open; dropped without a sink.
     */
    public Outcome assertLine() {
        boolean deliver;
        synchronized (this) {
            if (!asserted) {
                asserted = true;
                config.hardwareUpdate(STATUS, 2, STATUS_INTERRUPT, true);
            }
            deliver = edge();
            if (!deliver && slot.get() == null) {
                slot.countDropped();
                return Outcome.DROPPED;
            }
        }
        return deliver ? deliver() : Outcome.PENDING;
    }

    /** Deasserts the line and clears Interrupt Status, as the device does once the driver cleared its cause. */
    public void deassertLine() {
        synchronized (this) {
            asserted = false;
            seen = false;
            config.hardwareUpdate(STATUS, 2, STATUS_INTERRUPT, false);
        }
    }

    /**
     * Asserts and deasserts the line: delivered if the gate was open, else dropped, since a line deasserted before
     * the gate opens leaves nothing behind. A line already asserted stays asserted and the pulse is pending with it.
     */
    public Outcome pulse() {
        synchronized (this) {
            if (asserted) {
                return Outcome.PENDING;
            }
        }
        Outcome o = assertLine();
        deassertLine();
        if (o == Outcome.PENDING) {
            slot.countDropped();
            return Outcome.DROPPED;
        }
        return o;
    }

    private void reevaluate() {
        boolean deliver;
        synchronized (this) {
            deliver = edge();
        }
        if (deliver) {
            deliver();
        }
    }

    /** Updates what the controller sees; true on a rising edge that a sink can take. Caller holds the lock. */
    private boolean edge() {
        boolean now = asserted && gateOpen() && slot.get() != null;
        boolean rising = now && !seen;
        seen = now;
        return rising;
    }

    private boolean gateOpen() {
        return (config.command() & COMMAND_INTX_DISABLE) == 0
                && (msiFlags < 0 || (config.read(msiFlags, 2) & MSI_FLAGS_ENABLE) == 0)
                && (msixFlags < 0 || (config.read(msixFlags, 2) & MSIX_FLAGS_ENABLE) == 0);
    }

    private Outcome deliver() {
        Sink s = slot.get();
        if (s == null) {
            slot.countDropped();
            return Outcome.DROPPED;
        }
        slot.countDelivered();
        s.interrupt();
        return Outcome.DELIVERED;
    }
}
