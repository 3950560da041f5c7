package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.osgi.annotation.versioning.ConsumerType;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.function.IntUnaryOperator;

import static dev.dmaplane.pci.PciRegs.*;

/**
 * A function's MSI-X capability as the device implements it (PCI Express Base Spec 7.7.2,
 * {@code Documentation/PCI/msi-howto.rst}): the vector table of 16-byte entries (Message Address, Message Upper
 * Address, Message Data, Vector Control with its Mask bit) and the Pending Bit Array, both at the offsets of the BAR
 * the capability names and reached through that BAR's MMIO; and {@link #raise}, what the device does when it wants
 * an interrupt.
 * <p>
 * A raise is dropped (and counted) while MSI-X Enable or Bus Master Enable is clear, or when no interrupt controller
 * is {@linkplain #attach attached} to take the message. While the vector's Mask bit or the Function Mask is set it
 * only sets the vector's Pending bit; unmasking a pending vector sends its message then and clears the bit.
 * Messages go to the {@link Sink} outside this object's lock; the lock is taken before the config space's.
 */
public final class Msix {
    /** What became of one {@link #raise}. */
    public enum Outcome {
        /** The message was sent to the attached sink. */
        DELIVERED,
        /** The vector or the function is masked: the Pending bit is set and the message waits for unmasking. */
        PENDING,
        /** MSI-X Enable or Bus Master Enable is clear, or no sink is attached: nothing was sent or kept. */
        DROPPED
    }

    /** The interrupt controller side: receives the memory write an MSI-X message is ({@code msi_msg}). */
    @ConsumerType
    public interface Sink {
        /** The function wrote {@code data} to {@code address} for {@code vector}. */
        void message(int vector, long address, int data);
    }

    /** Writable bits of the four dwords of an entry: address bits 1:0 are zero, Vector Control has only its Mask bit. */
    private static final int[] ENTRY_WMASK = {0xFFFF_FFFC, 0xFFFF_FFFF, 0xFFFF_FFFF, MSIX_ENTRY_CTRL_MASKBIT};

    private final String owner;
    private final ConfigSpace config;
    private final int cap;
    private final int vectors;
    private final int bar;
    private final long tableOffset;
    private final long pbaOffset;
    /** Four dwords per entry, as the table lies in the BAR. */
    private final int[] table;
    private final long[] pba;
    private final SinkSlot<Sink> slot;

    private Msix(String owner, ConfigSpace config, int cap) {
        this.owner = owner;
        this.slot = new SinkSlot<>(owner, "MSI-X");
        this.config = config;
        this.cap = cap;
        this.vectors = (config.read(cap + MSIX_FLAGS, 2) & MSIX_FLAGS_QSIZE) + 1;
        int tableReg = config.read(cap + MSIX_TABLE, 4);
        int pbaReg = config.read(cap + MSIX_PBA, 4);
        this.bar = tableReg & MSIX_BIR_MASK;
        this.tableOffset = tableReg & ~MSIX_BIR_MASK & 0xFFFF_FFFFL;
        this.pbaOffset = pbaReg & ~MSIX_BIR_MASK & 0xFFFF_FFFFL;
        this.table = new int[vectors * 4];
        for (int v = 0; v < vectors; v++) {
            table[4 * v + 3] = MSIX_ENTRY_CTRL_MASKBIT;
        }
        this.pba = new long[(vectors + 63) / 64];
    }

    /**
     * The MSI-X structures of the function with config space {@code config}, or empty if it has no MSI-X capability;
     * they follow the config space's Message Control from now on.
     */
    static Optional<Msix> of(String owner, ConfigSpace config) {
        OptionalInt cap = config.findCapability(CAP_ID_MSIX);
        if (cap.isEmpty()) {
            return Optional.empty();
        }
        Msix m = new Msix(owner, config, cap.getAsInt());
        config.addWriteListener(m::configWritten);
        return Optional.of(m);
    }

    /** The number of vectors, the Table Size field plus one. */
    public int vectors() {
        return vectors;
    }

    /** The BAR index (BIR) holding the table and the PBA. */
    public int bar() {
        return bar;
    }

    /** The table's offset in {@link #bar()}. */
    public long tableOffset() {
        return tableOffset;
    }

    /** The PBA's offset in {@link #bar()}. */
    public long pbaOffset() {
        return pbaOffset;
    }

    /** Whether Message Control's MSI-X Enable bit is set. */
    public boolean enabled() {
        return (control() & MSIX_FLAGS_ENABLE) != 0;
    }

    /** Whether Message Control's Function Mask bit is set. */
    public boolean functionMasked() {
        return (control() & MSIX_FLAGS_MASKALL) != 0;
    }

    /**
     * Whether {@code vector}'s Mask bit is set.
     *
     * @throws ErrnoException {@code EINVAL} for a vector outside the table
     */
    public synchronized boolean masked(int vector) {
        checkVector(vector);
        return vectorMasked(vector);
    }

    /**
     * Whether {@code vector}'s Pending bit is set.
     *
     * @throws ErrnoException {@code EINVAL} for a vector outside the table
     */
    public synchronized boolean pending(int vector) {
        checkVector(vector);
        return isPending(vector);
    }

    /** Messages sent so far. */
    public long delivered() {
        return slot.delivered();
    }

    /** Raises dropped so far (MSI-X or bus mastering off, or no sink). */
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
     * @throws ErrnoException {@code EINVAL} for a vector outside the table
     */
    public Outcome raise(int vector) {
        checkVector(vector);
        MsiMsg m;
        synchronized (this) {
            int ctl = control();
            if ((ctl & MSIX_FLAGS_ENABLE) == 0 || !config.busMasterEnabled() || slot.get() == null) {
                slot.countDropped();
                return Outcome.DROPPED;
            }
            if ((ctl & MSIX_FLAGS_MASKALL) != 0 || vectorMasked(vector)) {
                pba[vector >>> 6] |= 1L << (vector & 63);
                return Outcome.PENDING;
            }
            m = message(vector);
        }
        return MsiMsg.send(slot, List.of(m)) == 1 ? Outcome.DELIVERED : Outcome.DROPPED;
    }

    /** Whether {@code offset} (relative to the BAR) falls in the table or the PBA. */
    boolean claims(long offset) {
        return inTable(offset) || inPba(offset);
    }

    /** A load from the table or the PBA; {@code offset} is checked and aligned to {@code size} by the BAR. */
    long read(long offset, int size) {
        synchronized (this) {
            if (inTable(offset)) {
                return load(offset - tableOffset, size, i -> table[i]);
            }
            return load(offset - pbaOffset, size, i -> (int) (pba[i >>> 1] >>> (32 * (i & 1))));
        }
    }

    /** A store to the table; the PBA is read-only and ignores stores. Unmasking a pending vector sends it. */
    void write(long offset, int size, long value) {
        if (!inTable(offset)) {
            return;
        }
        long rel = offset - tableOffset;
        List<MsiMsg> out;
        synchronized (this) {
            for (int done = 0; done < size; done += Math.min(size, 4)) {
                long at = rel + done;
                int dword = (int) (at >>> 2);
                int shift = (int) (at & 3) * 8;
                int bytes = Math.min(size, 4);
                int lane = (bytes == 4 ? -1 : (1 << (8 * bytes)) - 1) << shift;
                int v = (int) (value >>> (8 * done)) << shift;
                int writable = lane & ENTRY_WMASK[dword & 3];
                table[dword] = (table[dword] & ~writable) | (v & writable);
            }
            out = sendable();
        }
        MsiMsg.send(slot, out);
    }

    private static long load(long rel, int size, IntUnaryOperator dwords) {
        int dword = (int) (rel >>> 2);
        if (size == 8) {
            return (dwords.applyAsInt(dword) & 0xFFFF_FFFFL) | (long) dwords.applyAsInt(dword + 1) << 32;
        }
        long v = (dwords.applyAsInt(dword) & 0xFFFF_FFFFL) >>> ((rel & 3) * 8);
        return size == 4 ? v : v & ((1L << (8 * size)) - 1);
    }

    private void configWritten(int offset, int size) {
        int ctl = cap + MSIX_FLAGS;
        if (offset < ctl + 2 && offset + size > ctl) {
            List<MsiMsg> out;
            synchronized (this) {
                out = sendable();
            }
            MsiMsg.send(slot, out);
        }
    }

    /** Pending vectors that may send now, their Pending bits cleared; caller holds the lock. */
    private List<MsiMsg> sendable() {
        int ctl = control();
        List<MsiMsg> out = new ArrayList<>();
        if ((ctl & MSIX_FLAGS_ENABLE) == 0 || (ctl & MSIX_FLAGS_MASKALL) != 0 || !config.busMasterEnabled()) {
            return out;
        }
        for (int v = 0; v < vectors; v++) {
            if (isPending(v) && !vectorMasked(v)) {
                pba[v >>> 6] &= ~(1L << (v & 63));
                out.add(message(v));
            }
        }
        return out;
    }

    private MsiMsg message(int vector) {
        long address = (table[4 * vector] & 0xFFFF_FFFFL) | (long) table[4 * vector + 1] << 32;
        return new MsiMsg(vector, address, table[4 * vector + 2]);
    }

    private boolean vectorMasked(int vector) {
        return (table[4 * vector + 3] & MSIX_ENTRY_CTRL_MASKBIT) != 0;
    }

    private boolean isPending(int vector) {
        return (pba[vector >>> 6] & (1L << (vector & 63))) != 0;
    }

    private int control() {
        return config.read(cap + MSIX_FLAGS, 2);
    }

    private boolean inTable(long offset) {
        return offset >= tableOffset && offset < tableOffset + (long) vectors * MSIX_ENTRY_SIZE;
    }

    private boolean inPba(long offset) {
        return offset >= pbaOffset && offset < pbaOffset + 8L * pba.length;
    }

    /** A copy of the table ({@code pci_save_state} keeps the kernel's cached messages). */
    synchronized int[] saveTable() {
        return table.clone();
    }

    /** Writes {@code saved} back entry by entry; vectors unmasked by it send what they have pending. */
    void restoreTable(int[] saved) {
        List<MsiMsg> out;
        synchronized (this) {
            for (int i = 0; i < table.length; i++) {
                table[i] = saved[i] & ENTRY_WMASK[i & 3];
            }
            out = sendable();
        }
        MsiMsg.send(slot, out);
    }

    /**
     * Returns the structures to their reset state (PCIe Base Spec 7.7.2: after a reset every entry is masked, the
     * PBA is clear and MSI-X Enable and Function Mask are clear); the attached sink stays.
     */
    void reset() {
        synchronized (this) {
            for (int v = 0; v < vectors; v++) {
                table[4 * v] = 0;
                table[4 * v + 1] = 0;
                table[4 * v + 2] = 0;
                table[4 * v + 3] = MSIX_ENTRY_CTRL_MASKBIT;
            }
            Arrays.fill(pba, 0);
            config.write(cap + MSIX_FLAGS, 2, 0);
        }
    }

    private void checkVector(int vector) {
        if (vector < 0 || vector >= vectors) {
            throw new ErrnoException(Errno.EINVAL, owner + ": MSI-X vector " + vector + " is outside 0.." + (vectors - 1));
        }
    }
}
