package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.dmaplane.pci.PciRegs.*;

/**
 * A function's 4 KiB PCI Express configuration space: the type 0 or type 1 header, the capability list from
 * {@code 0x34} and extended capabilities from {@code 0x100} ({@code pci_read_config_*}/{@code pci_write_config_*}).
 * <p>
 * Every byte has a write mask: bits outside it are read-only and keep their value whatever is written; the
 * Status error bits are write-one-to-clear. A BAR's mask covers only the address bits at or above its size, so
 * writing all-ones and reading back yields the size mask, the sizing protocol {@code __pci_read_base} uses.
 * Accesses are 1, 2 or 4 bytes, naturally aligned, little-endian, and atomic with respect to each other.
 * <p>Size: about 660 lines, over the project's 600, because the exported API fixes {@link Builder} as a nested type
 * of this class: its setters (about 150 lines, with the AER, serial and link settings) stay beside the register file
 * (about 490). {@link ConfigLayout} lays out the power-on values they describe, {@link CapabilityList} walks the
 * capability lists and {@link BarAddresses} decodes the BARs.
 */
public final class ConfigSpace {
    /** Bytes of PCI Express config space ({@code PCI_CFG_SPACE_EXP_SIZE}). */
    public static final int SIZE = CFG_SPACE_EXP_SIZE;

    private final byte[] data = new byte[SIZE];
    private final byte[] wmask = new byte[SIZE];
    private final byte[] w1cmask = new byte[SIZE];
    /** Sticky bits (ROS, RWS, RW1CS): a Function Level Reset or a hot reset leaves them as they are. */
    private final byte[] stickyMask = new byte[SIZE];
    /** The command register, kept apart so that a device's every transaction reads Bus Master Enable without the monitor. */
    private volatile int command;
    /** Whether the function is in D3hot: it decodes no memory and masters nothing, only config space answers. */
    private volatile boolean d3hot;
    /** Offset of the Power Management capability, or -1. */
    private int pmPos = -1;
    /**
     * Whether the hardware answers at all: while false (its device model is not loaded, or left) every read returns
     * all-ones and writes are dropped, as config requests to an empty slot end in a master abort.
     */
    private volatile boolean present = true;
    /** The function these registers belong to, once it exists: where its error messages start up the hierarchy. */
    private volatile PciFunction owner;
    /** The registers at power-on, before firmware configured anything: what a reset returns them to. */
    private byte[] powerOn;
    /** The registers as firmware left them at boot, which new hardware in this slot comes up with again. */
    private byte[] firmware;
    private final List<WriteListener> listeners = new CopyOnWriteArrayList<>();
    /**
     * Counts {@link #write}s to every config space of one topology (this one's alone when it belongs to none), so
     * that what is derived from the registers (address decoding) can be cached and checked with one read.
     */
    private final AtomicInteger writes;
    /** The BARs' bus addresses, decoded again after a write: a device model's every DMA asks ({@link #barAddress}). */
    private final BarAddresses bars;

    ConfigSpace(AtomicInteger writes) {
        this.writes = writes;
        this.bars = new BarAddresses(this, writes);
    }

    /** A capability found in the list ({@code lspci -v} "Capabilities: [offset] name"). */
    public record Capability(int id, int offset, boolean extended, int version) {
        /** The name {@code lspci} prints for this capability. */
        public String name() {
            if (extended) {
                return switch (id) {
                    case EXT_CAP_ID_ACS -> "Access Control Services";
                    case EXT_CAP_ID_ERR -> "Advanced Error Reporting";
                    case EXT_CAP_ID_DSN -> "Device Serial Number";
                    case EXT_CAP_ID_SECPCI -> "Secondary PCI Express";
                    case EXT_CAP_ID_PL_16GT -> "Physical Layer 16.0 GT/s";
                    default -> String.format("Extended Capability ID %#06x", id);
                };
            }
            return switch (id) {
                case CAP_ID_PM -> "Power Management";
                case CAP_ID_MSI -> "MSI";
                case CAP_ID_EXP -> "Express";
                case CAP_ID_MSIX -> "MSI-X";
                default -> String.format("Capability ID %#04x", id);
            };
        }
    }

    /** A bridge's forwarding window of bus addresses, inclusive at both ends. */
    public record Window(long base, long limit) {
        public long size() {
            return limit - base + 1;
        }
    }

    /** Starts a config space for a function with these IDs and 24-bit class code. */
    public static Builder builder(int vendorId, int deviceId, int classCode) {
        return new Builder(vendorId, deviceId, classCode);
    }

    /**
     * Reads {@code size} (1, 2 or 4) bytes at {@code offset}, zero-extended (a dword comes back as its 32 bits).
     *
     * @throws ErrnoException {@code EINVAL} for another size, an offset outside the space or a misaligned access
     */
    public synchronized int read(int offset, int size) {
        checkAccess(offset, size);
        if (!present) {
            return size == 4 ? -1 : (1 << (8 * size)) - 1;
        }
        int v = 0;
        for (int i = size - 1; i >= 0; i--) {
            v = (v << 8) | (data[offset + i] & 0xFF);
        }
        return v;
    }

    /**
     * Writes the low {@code size} bytes of {@code value} at {@code offset}: only writable bits change, and
     * write-one-to-clear bits written as one are cleared. A write to an absent function is dropped, and the bridge
     * above it records the Unsupported Request completion it received (Secondary Status Received Master Abort).
     *
     * @throws ErrnoException {@code EINVAL} for another size, an offset outside the space or a misaligned access
     */
    public void write(int offset, int size, int value) {
        checkAccess(offset, size);
        boolean stored;
        synchronized (this) {
            stored = present;
            if (stored) {
                store(offset, size, value);
            }
        }
        if (!stored) {
            // nothing completes the request: the bridge above gets an Unsupported Request completion back
            PcieErrors.configRequestUnsupported(this);
            return;
        }
        for (WriteListener l : listeners) {
            l.written(offset, size);
        }
    }

    private void store(int offset, int size, int value) {
        for (int i = 0; i < size; i++) {
            int b = (value >>> (8 * i)) & 0xFF;
            int at = offset + i;
            int wm = wmask[at] & 0xFF;
            int cur = data[at] & 0xFF;
            cur = (cur & ~wm) | (b & wm);
            cur &= ~(b & w1cmask[at] & 0xFF);
            data[at] = (byte) cur;
        }
        if (offset < COMMAND + 2 && offset + size > COMMAND) {
            command = (data[COMMAND] & 0xFF) | (data[COMMAND + 1] & 0xFF) << 8;
        }
        if (pmPos >= 0 && offset < pmPos + PM_CTRL + 2 && offset + size > pmPos + PM_CTRL) {
            powerStateWritten();
        }
        writes.incrementAndGet();
    }

    /**
     * PCI PM 1.2, 5.6.2: a write of a power state the function does not support (D1, D2 here: PMC advertises
     * neither) leaves the state as it was; D3hot stops memory decoding and bus mastering until D0.
     */
    private void powerStateWritten() {
        int at = pmPos + PM_CTRL;
        int state = data[at] & PM_CTRL_STATE_MASK;
        if (state == 1 || state == 2) {
            data[at] = (byte) ((data[at] & ~PM_CTRL_STATE_MASK) | (d3hot ? 3 : 0));
        } else {
            d3hot = state == 3;
        }
    }

    /**
     * Sets or clears {@code bits} at {@code offset} whatever the write mask says: the function itself changing a
     * register software cannot write (an MSI Pending bit, Status Interrupt Status). No write listener is told.
     */
    void hardwareUpdate(int offset, int size, int bits, boolean set) {
        checkAccess(offset, size);
        synchronized (this) {
            for (int i = 0; i < size; i++) {
                int b = (bits >>> (8 * i)) & 0xFF;
                data[offset + i] = (byte) (set ? data[offset + i] | b : data[offset + i] & ~b);
            }
            bars.invalidate();
        }
    }

    /** Told of every completed {@link #write} after the registers changed, once {@code write} released this space's lock. */
    interface WriteListener {
        void written(int offset, int size);
    }

    /** Binds the registers to the function they belong to. */
    void owner(PciFunction fn) {
        owner = fn;
    }

    /** The function these registers belong to; empty for a config space outside a topology. */
    Optional<PciFunction> owner() {
        return Optional.ofNullable(owner);
    }

    /** Adds {@code l}, which a register block the function implements (MSI-X) uses to follow its control bits. */
    void addWriteListener(WriteListener l) {
        listeners.add(l);
    }

    private static void checkAccess(int offset, int size) {
        if (size != 1 && size != 2 && size != 4) {
            throw new ErrnoException(Errno.EINVAL, "config access size must be 1, 2 or 4, not " + size);
        }
        if (offset < 0 || offset > SIZE - size) {
            throw new ErrnoException(Errno.EINVAL, String.format("config offset %#x (size %d) is outside the %d-byte space",
                    offset, size, SIZE));
        }
        if (offset % size != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("config offset %#x is not aligned to its size %d", offset, size));
        }
    }

    public int vendorId() {
        return read(VENDOR_ID, 2);
    }

    public int deviceId() {
        return read(DEVICE_ID, 2);
    }

    /** The 24-bit class code: base class, subclass, programming interface ({@code pdev->class}). */
    public int classCode() {
        return read(CLASS_REVISION, 4) >>> 8;
    }

    public int revision() {
        return read(REVISION_ID, 1);
    }

    /** The header layout, {@link PciRegs#HEADER_TYPE_NORMAL} or {@link PciRegs#HEADER_TYPE_BRIDGE}. */
    public int headerType() {
        return read(HEADER_TYPE, 1) & HEADER_TYPE_MASK;
    }

    /** Whether this is a type 1 (PCI-to-PCI bridge) header. */
    public boolean isBridgeHeader() {
        return headerType() == HEADER_TYPE_BRIDGE;
    }

    /** The multi-function bit of the header type ({@code pdev->multifunction}). */
    public boolean isMultifunction() {
        return (read(HEADER_TYPE, 1) & HEADER_TYPE_MFD) != 0;
    }

    /** Subsystem vendor ID of a type 0 header; 0 for a bridge, whose header has none. */
    public int subsystemVendorId() {
        return isBridgeHeader() ? 0 : read(SUBSYSTEM_VENDOR_ID, 2);
    }

    /** Subsystem ID of a type 0 header; 0 for a bridge. */
    public int subsystemId() {
        return isBridgeHeader() ? 0 : read(SUBSYSTEM_ID, 2);
    }

    /** The Command register; all-ones while the hardware is absent. */
    public int command() {
        return present ? command : 0xFFFF;
    }

    public int status() {
        return read(STATUS, 2);
    }

    /** Whether the Bus Master Enable bit is set: the function may issue DMA ({@code pci_set_master}). */
    public boolean busMasterEnabled() {
        return present && !d3hot && (command & COMMAND_MASTER) != 0;
    }

    /** Whether Memory Space Enable is set: the function decodes its memory BARs. */
    public boolean memorySpaceEnabled() {
        return present && !d3hot && (command & COMMAND_MEMORY) != 0;
    }

    /** Whether the function is in D3hot ({@code PCI_PM_CTRL} state 3). */
    public boolean inD3hot() {
        return d3hot;
    }

    /** Whether the hardware answers config requests (see {@link PciFunction#absence()}). */
    public boolean present() {
        return present;
    }

    /** Records the registers as they are now as the state firmware leaves this function in. */
    synchronized void captureFirmwareState() {
        firmware = data.clone();
    }

    /**
     * Puts the registers back to the state firmware left them in ({@link #captureFirmwareState}), as new hardware in
     * the slot is configured again; listeners hear of it as a write of the whole space.
     */
    void restoreFirmwareState() {
        synchronized (this) {
            if (firmware == null) {
                return;
            }
            System.arraycopy(firmware, 0, data, 0, SIZE);
            command = (data[COMMAND] & 0xFF) | (data[COMMAND + 1] & 0xFF) << 8;
            d3hot = false;
            writes.incrementAndGet();
        }
        for (WriteListener l : listeners) {
            l.written(0, SIZE);
        }
    }

    /**
     * Returns every register to its power-on value, as a Function Level Reset or a secondary bus reset does (PCIe
     * Base Spec 6.6: BARs unassigned, decoding and bus mastering off, MSI and MSI-X disabled).
     */
    void resetToPowerOn() {
        synchronized (this) {
            for (int i = 0; i < SIZE; i++) {
                data[i] = (byte) (powerOn[i] & ~stickyMask[i] | data[i] & stickyMask[i]);
            }
            command = 0;
            d3hot = false;
            writes.incrementAndGet();
        }
        for (WriteListener l : listeners) {
            l.written(0, SIZE);
        }
    }

    /** A copy of every register ({@code pci_save_state}). */
    synchronized byte[] save() {
        return data.clone();
    }

    /**
     * Writes {@code saved} back through the normal write path, so that only writable bits change: every dword but
     * the Command register first, then Command, as {@code pci_restore_config_space} restores BARs before it enables
     * decoding.
     */
    void restore(byte[] saved) {
        for (int off = SIZE - 4; off >= 0; off -= 4) {
            if (off != COMMAND) {
                int v = (saved[off] & 0xFF) | (saved[off + 1] & 0xFF) << 8 | (saved[off + 2] & 0xFF) << 16
                        | (saved[off + 3] & 0xFF) << 24;
                if (read(off, 4) != v) {
                    write(off, 4, v);
                }
            }
        }
        write(COMMAND, 2, (saved[COMMAND] & 0xFF) | (saved[COMMAND + 1] & 0xFF) << 8);
    }

    /**
     * The hardware arrives or leaves. Counted as a config write, so that what was derived from the registers
     * (address decoding, routes) is derived again.
     */
    void setPresent(boolean p) {
        synchronized (this) {
            present = p;
            writes.incrementAndGet();
        }
    }

    public int primaryBus() {
        requireBridge("primary bus");
        return read(PRIMARY_BUS, 1);
    }

    public int secondaryBus() {
        requireBridge("secondary bus");
        return read(SECONDARY_BUS, 1);
    }

    public int subordinateBus() {
        requireBridge("subordinate bus");
        return read(SUBORDINATE_BUS, 1);
    }

    private void requireBridge(String what) {
        if (!isBridgeHeader()) {
            throw new ErrnoException(Errno.EINVAL, what + " exists only in a type 1 header; this is type " + headerType());
        }
    }

    /**
     * The bus address BAR register {@code index} holds, joining the upper dword of a 64-bit BAR; 0 if the
     * BAR is not implemented.
     */
    public long barAddress(int index) {
        return bars.address(index);
    }

    /** The non-prefetchable memory window of a bridge, empty when base exceeds limit (the window is off). */
    public Optional<Window> memoryWindow() {
        requireBridge("memory window");
        long base = (read(MEMORY_BASE, 2) & 0xFFF0L) << 16;
        long limit = ((read(MEMORY_LIMIT, 2) & 0xFFF0L) << 16) | 0xFFFFF;
        return base > limit ? Optional.empty() : Optional.of(new Window(base, limit));
    }

    /** The prefetchable memory window of a bridge (64-bit when the range type says so), empty when off. */
    public Optional<Window> prefetchableWindow() {
        requireBridge("prefetchable window");
        int b = read(PREF_MEMORY_BASE, 2);
        int l = read(PREF_MEMORY_LIMIT, 2);
        long base = (b & 0xFFF0L) << 16;
        long limit = ((l & 0xFFF0L) << 16) | 0xFFFFF;
        if ((b & 0xF) == PREF_RANGE_TYPE_64) {
            base |= (read(PREF_BASE_UPPER32, 4) & 0xFFFF_FFFFL) << 32;
            limit |= (read(PREF_LIMIT_UPPER32, 4) & 0xFFFF_FFFFL) << 32;
        }
        return Long.compareUnsigned(base, limit) > 0 ? Optional.empty() : Optional.of(new Window(base, limit));
    }

    /** The capabilities in list order: the standard list from {@code 0x34}, then the extended list from {@code 0x100}. */
    public List<Capability> capabilities() {
        return CapabilityList.walk(this);
    }

    /** The offset of standard capability {@code id} ({@code pci_find_capability}). */
    public OptionalInt findCapability(int id) {
        return CapabilityList.find(this, id, false);
    }

    /** The offset of extended capability {@code id} ({@code pci_find_ext_capability}). */
    public OptionalInt findExtCapability(int id) {
        return CapabilityList.find(this, id, true);
    }

    /** The device/port type from the PCI Express capability; empty for a conventional PCI function. */
    public Optional<PciPortType> portType() {
        OptionalInt exp = findCapability(CAP_ID_EXP);
        if (exp.isEmpty()) {
            return Optional.empty();
        }
        return Optional.of(PciPortType.of((read(exp.getAsInt() + EXP_FLAGS, 2) & EXP_FLAGS_TYPE) >>> 4));
    }

    /** The ACS Capability register, empty if the function has no ACS extended capability. */
    public Optional<Acs> acsCapability() {
        OptionalInt pos = findExtCapability(EXT_CAP_ID_ACS);
        return pos.isEmpty() ? Optional.empty()
                : Optional.of(Acs.of(read(pos.getAsInt() + ACS_CAP, 2) & Acs.ALL_BITS));
    }

    /** The ACS Control register, empty if the function has no ACS extended capability. */
    public Optional<Acs> acsControl() {
        OptionalInt pos = findExtCapability(EXT_CAP_ID_ACS);
        return pos.isEmpty() ? Optional.empty()
                : Optional.of(Acs.of(read(pos.getAsInt() + ACS_CTRL, 2) & Acs.ALL_BITS));
    }

    /** Sets a register's reset value and the bits software may write, as the hardware defines them. */
    void init(int offset, int size, int value, int writable) {
        for (int i = 0; i < size; i++) {
            data[offset + i] = (byte) (value >>> (8 * i));
            wmask[offset + i] = (byte) (writable >>> (8 * i));
        }
        command = (data[COMMAND] & 0xFF) | (data[COMMAND + 1] & 0xFF) << 8;
        bars.invalidate();
    }

    /** Marks a register's write-one-to-clear bits. */
    void initW1c(int offset, int size, int bits) {
        for (int i = 0; i < size; i++) {
            w1cmask[offset + i] = (byte) (bits >>> (8 * i));
        }
    }

    /** Marks a register's sticky bits, which FLR and hot reset do not touch (PCIe Base Spec 7.4). */
    void initSticky(int offset, int size, int bits) {
        for (int i = 0; i < size; i++) {
            stickyMask[offset + i] = (byte) (bits >>> (8 * i));
        }
    }

    /**
     * The link trained to {@code speed} (a Current Link Speed encoding) and {@code width} lanes: Link Status shows
     * them now, after a reset of the function (which does not retrain its link to other values) and after the
     * firmware state is restored (PCIe Base Spec 7.5.3.8).
     */
    synchronized void linkTrained(int speed, int width) {
        int pos = findCapability(CAP_ID_EXP).orElseThrow() + EXP_LNKSTA;
        int value = width << 4 & EXP_LNKSTA_NLW | speed & EXP_LNKSTA_CLS;
        for (byte[] regs : new byte[][]{data, powerOn, firmware}) {
            if (regs != null) {
                int sta = (regs[pos] & 0xFF | (regs[pos + 1] & 0xFF) << 8) & ~(EXP_LNKSTA_NLW | EXP_LNKSTA_CLS) | value;
                regs[pos] = (byte) sta;
                regs[pos + 1] = (byte) (sta >>> 8);
            }
        }
    }

    /** Takes the registers as laid out as the power-on values a reset returns to, and finds the PM capability. */
    void recordPowerOn() {
        pmPos = findCapability(CAP_ID_PM).orElse(-1);
        powerOn = data.clone();
    }

    /**
     * Builds a config space as a device's hardware presents it at reset, plus the values firmware programmed
     * (bus numbers). Every function gets the Power Management capability; PCI Express functions the Express
     * capability carrying their port type.
     */
    public static final class Builder {
        private final ConfigLayout layout;

        /** Counts this config space's writes in {@code counter}, shared by every config space of a topology. */
        Builder writeCounter(AtomicInteger counter) {
            layout.writes = counter;
            return this;
        }

        private Builder(int vendorId, int deviceId, int classCode) {
            this.layout = new ConfigLayout(vendorId, deviceId, classCode);
        }

        public Builder revision(int rev) {
            layout.revision = rev;
            return this;
        }

        public Builder subsystem(int vendor, int device) {
            layout.subVendor = vendor;
            layout.subDevice = device;
            return this;
        }

        public Builder multifunction(boolean mf) {
            layout.multifunction = mf;
            return this;
        }

        /** Adds the PCI Express capability with this port type; bridge types get a type 1 header. */
        public Builder express(PciPortType type) {
            layout.express = type;
            return this;
        }

        /** Adds a memory BAR of {@code size} bytes (a power of two, at least 4 KiB). */
        public Builder bar(int index, long size, boolean is64, boolean prefetchable) {
            layout.bars.add(new ConfigLayout.BarDef(index, size, is64, prefetchable));
            return this;
        }

        /** Adds the MSI-X capability: {@code vectors} entries, table and PBA in BAR {@code bir}. */
        public Builder msix(int vectors, int bir, long tableOffset, long pbaOffset) {
            layout.msixVectors = vectors;
            layout.msixBir = bir;
            layout.msixTable = tableOffset;
            layout.msixPba = pbaOffset;
            return this;
        }

        /**
         * Adds the MSI capability (PCI Local Bus Spec 6.8.1): {@code vectors} (a power of two, 1..32) as Multiple
         * Message Capable, a 64-bit Message Address if {@code is64}, Mask and Pending Bits if {@code perVectorMask}.
         */
        public Builder msi(int vectors, boolean is64, boolean perVectorMask) {
            layout.hasMsi = true;
            layout.msiVectors = vectors;
            layout.msi64 = is64;
            layout.msiMask = perVectorMask;
            return this;
        }

        /** Adds the ACS extended capability with these Capability and (initial) Control registers. */
        public Builder acs(Acs capability, Acs control) {
            layout.acsCap = capability;
            layout.acsCtrl = control;
            return this;
        }

        /**
         * The 64-bit Device Serial Number (PCIe Base Spec 7.9.3); without it the serial derives from the IDs.
         */
        public Builder serial(long serial) {
            layout.serial = serial;
            return this;
        }

        /** Whether the function has the Advanced Error Reporting capability (PCIe Base Spec 7.8.4); it has by default. */
        public Builder aer(boolean present) {
            layout.aer = present;
            return this;
        }

        /**
         * The link's Max Link Speed as a Supported Link Speeds index (1 for 2.5 GT/s up to 4 for 16 GT/s) and Maximum
         * Link Width in lanes (1, 2, 4, 8 or 16), as Link Capabilities reports them (PCIe Base Spec 7.5.3.6); the
         * link trains to both. 16 GT/s x16 unless set.
         *
         * @throws ErrnoException {@code EINVAL} naming a speed or width outside these
         */
        public Builder link(int speed, int width) {
            if (speed < 1 || speed > ConfigLayout.LINK_SPEED_16GT) {
                throw new ErrnoException(Errno.EINVAL, "link speed " + speed + " is outside 1 (2.5 GT/s) to "
                        + ConfigLayout.LINK_SPEED_16GT + " (16 GT/s)");
            }
            if (width != 1 && width != 2 && width != 4 && width != 8 && width != 16) {
                throw new ErrnoException(Errno.EINVAL, "link width x" + width + " is not one of x1, x2, x4, x8, x16");
            }
            layout.linkSpeed = speed;
            layout.linkWidth = width;
            return this;
        }

        /**
         * The Port Number of the link (Link Capabilities bits 31:24, PCIe Base Spec 7.5.3.6), 0..255.
         *
         * @throws ErrnoException {@code EINVAL} naming a number outside 0..255
         */
        public Builder portNumber(int number) {
            if (number < 0 || number > 0xFF) {
                throw new ErrnoException(Errno.EINVAL, "port number " + number + " is outside 0..255");
            }
            layout.portNumber = number;
            return this;
        }

        /**
         * The Physical Slot Number of a root or downstream port's slot (Slot Capabilities bits 31:19, PCIe Base Spec
         * 7.5.3.9), 0..8191; ignored for a function without a slot.
         *
         * @throws ErrnoException {@code EINVAL} naming a number outside 0..8191
         */
        public Builder slotNumber(int number) {
            if (number < 0 || number > 0x1FFF) {
                throw new ErrnoException(Errno.EINVAL, "physical slot number " + number + " is outside 0..8191");
            }
            layout.slotNumber = number;
            return this;
        }

        /** Sets a bridge's bus number registers, as firmware or {@code pci_scan_bridge} programs them. */
        public Builder busNumbers(int primaryBus, int secondaryBus, int subordinateBus) {
            layout.primary = primaryBus;
            layout.secondary = secondaryBus;
            layout.subordinate = subordinateBus;
            return this;
        }

        /**
         * Lays out the registers.
         *
         * @throws ErrnoException {@code EINVAL} naming the first bad value
         */
        public ConfigSpace build() {
            return layout.build();
        }
    }
}
