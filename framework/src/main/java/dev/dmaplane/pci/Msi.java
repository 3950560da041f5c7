package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Msix.Outcome;
import dev.dmaplane.pci.Msix.Sink;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;

import static dev.dmaplane.pci.PciRegs.*;

/**
 * A function's MSI capability as the device implements it (PCI Local Bus Spec 6.8.1, PCI Express Base Spec 7.7.1,
 * {@code PCI_MSI_*} in {@code include/uapi/linux/pci_regs.h}): Message Control with Multiple Message Capable and
 * Enable, Message Address (and Upper Address when 64-bit capable), Message Data, and Mask and Pending Bits when
 * per-vector masking is capable; all of it in config space. {@link #raise} is what the device does for an interrupt.
 * <p>
 * A raise is dropped (and counted) while MSI Enable or Bus Master Enable is clear, for a vector at or above the count
 * Multiple Message Enable allots, while MSI-X Enable is set too (PCI Local Bus Spec 6.8: software must not enable
 * both, and the result is undefined; this model lets MSI-X win, as {@code pci_enable_msi} refuses a function whose
 * MSI-X is enabled), or when no interrupt controller is {@linkplain #attach attached}. While the vector's Mask bit is
 * set it only sets its Pending bit; clearing the Mask bit sends the message then. The message is Message Data with
 * its low Multiple Message Enable bits replaced by the vector number. Messages go to the {@link Sink} outside this
 * object's lock; the lock is taken before the config space's.
 */
public final class Msi {
    private final String owner;
    private final ConfigSpace config;
    private final int cap;
    private final int vectors;
    private final boolean is64;
    private final boolean maskable;
    private final SinkSlot<Sink> slot;

    private Msi(String owner, ConfigSpace config, int cap) {
        this.owner = owner;
        this.slot = new SinkSlot<>(owner, "MSI");
        this.config = config;
        this.cap = cap;
        int ctl = config.read(cap + MSI_FLAGS, 2);
        this.vectors = 1 << ((ctl & MSI_FLAGS_QMASK) >>> 1);
        this.is64 = (ctl & MSI_FLAGS_64BIT) != 0;
        this.maskable = (ctl & MSI_FLAGS_MASKBIT) != 0;
    }

    /**
     * The MSI capability of the function with config space {@code config}, or empty if it has none; it follows the
     * config space's Message Control and Mask Bits from now on.
     */
    static Optional<Msi> of(String owner, ConfigSpace config) {
        OptionalInt cap = config.findCapability(CAP_ID_MSI);
        if (cap.isEmpty()) {
            return Optional.empty();
        }
        Msi m = new Msi(owner, config, cap.getAsInt());
        config.addWriteListener(m::configWritten);
        return Optional.of(m);
    }

    /** The capability's offset in config space ({@code pdev->msi_cap}). */
    public int capability() {
        return cap;
    }

    /** The vectors the function implements, from Multiple Message Capable ({@code pci_msi_vec_count}). */
    public int vectors() {
        return vectors;
    }

    /** The vectors software allotted, from Multiple Message Enable (never more than {@link #vectors()}). */
    public int enabledVectors() {
        return Math.min(vectors, 1 << ((control() & MSI_FLAGS_QSIZE) >>> 4));
    }

    /** Whether the Message Address has an upper dword ({@code PCI_MSI_FLAGS_64BIT}). */
    public boolean is64Bit() {
        return is64;
    }

    /** Whether the function implements Mask and Pending Bits ({@code PCI_MSI_FLAGS_MASKBIT}). */
    public boolean perVectorMask() {
        return maskable;
    }

    /** The config-space offset of Message Data. */
    public int dataOffset() {
        return cap + (is64 ? MSI_DATA_64 : MSI_DATA_32);
    }

    /**
     * The config-space offset of Mask Bits.
     *
     * @throws ErrnoException {@code EOPNOTSUPP} if the function is not per-vector masking capable
     */
    public int maskOffset() {
        requireMaskable();
        return cap + (is64 ? MSI_MASK_64 : MSI_MASK_32);
    }

    /** Whether Message Control's MSI Enable bit is set. */
    public boolean enabled() {
        return (control() & MSI_FLAGS_ENABLE) != 0;
    }

    /**
     * Whether {@code vector}'s Mask bit is set; always false without per-vector masking.
     *
     * @throws ErrnoException {@code EINVAL} for a vector outside those the function implements
     */
    public boolean masked(int vector) {
        checkVector(vector);
        return maskable && (config.read(cap + (is64 ? MSI_MASK_64 : MSI_MASK_32), 4) & (1 << vector)) != 0;
    }

    /**
     * Whether {@code vector}'s Pending bit is set; always false without per-vector masking.
     *
     * @throws ErrnoException {@code EINVAL} for a vector outside those the function implements
     */
    public boolean pending(int vector) {
        checkVector(vector);
        return maskable && (pendingBits() & (1 << vector)) != 0;
    }

    /** Messages sent so far. */
    public long delivered() {
        return slot.delivered();
    }

    /** Raises dropped so far. */
    public long dropped() {
        return slot.dropped();
    }

    /**
     * Attaches the interrupt controller that receives this function's messages.
     *
     * @throws ErrnoException {@code EINVAL} for a null sink, {@code EBUSY} if another sink is attached
     */
    public void attach(Sink s) {
        slot.attach(s);
    }

    /** The attached interrupt controller, if any. */
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
     * The device signals {@code vector}: sends its message, or sets its Pending bit while it is masked, or drops it.
     *
     * @throws ErrnoException {@code EINVAL} for a vector outside those the function implements
     */
    public Outcome raise(int vector) {
        checkVector(vector);
        MsiMsg m;
        synchronized (this) {
            if (!deliverable() || vector >= enabledVectors() || slot.get() == null) {
                slot.countDropped();
                return Outcome.DROPPED;
            }
            if (masked(vector)) {
                config.hardwareUpdate(pendingOffset(), 4, 1 << vector, true);
                return Outcome.PENDING;
            }
            m = message(vector);
        }
        return MsiMsg.send(slot, List.of(m)) == 1 ? Outcome.DELIVERED : Outcome.DROPPED;
    }

    /** MSI Enable and Bus Master Enable set, MSI-X Enable clear; caller holds the lock. */
    private boolean deliverable() {
        return (control() & MSI_FLAGS_ENABLE) != 0 && config.busMasterEnabled() && !msixEnabled();
    }

    private boolean msixEnabled() {
        OptionalInt msix = config.findCapability(CAP_ID_MSIX);
        return msix.isPresent() && (config.read(msix.getAsInt() + MSIX_FLAGS, 2) & MSIX_FLAGS_ENABLE) != 0;
    }

    private void configWritten(int offset, int size) {
        if (!maskable || offset >= cap + MSI_PENDING_64 + 4 || offset + size <= cap) {
            return;
        }
        List<MsiMsg> out = new ArrayList<>();
        synchronized (this) {
            if (deliverable()) {
                int ready = pendingBits() & ~config.read(maskOffset(), 4);
                for (int v = 0; v < enabledVectors(); v++) {
                    if ((ready & (1 << v)) != 0) {
                        config.hardwareUpdate(pendingOffset(), 4, 1 << v, false);
                        out.add(message(v));
                    }
                }
            }
        }
        MsiMsg.send(slot, out);
    }

    /** The Message Address and Message Data with the vector in the low bits Multiple Message Enable allots. */
    private MsiMsg message(int vector) {
        long address = config.read(cap + MSI_ADDRESS_LO, 4) & 0xFFFF_FFFFL;
        if (is64) {
            address |= (long) config.read(cap + MSI_ADDRESS_HI, 4) << 32;
        }
        int low = enabledVectors() - 1;
        int data = (config.read(dataOffset(), 2) & ~low) | vector;
        return new MsiMsg(vector, address, data);
    }

    private int pendingBits() {
        return config.read(pendingOffset(), 4);
    }

    private int pendingOffset() {
        return cap + (is64 ? MSI_PENDING_64 : MSI_PENDING_32);
    }

    private int control() {
        return config.read(cap + MSI_FLAGS, 2);
    }

    private void requireMaskable() {
        if (!maskable) {
            throw new ErrnoException(Errno.EOPNOTSUPP, owner + " is not per-vector masking capable");
        }
    }

    private void checkVector(int vector) {
        if (vector < 0 || vector >= vectors) {
            throw new ErrnoException(Errno.EINVAL, owner + ": MSI vector " + vector + " is outside 0.." + (vectors - 1));
        }
    }
}
