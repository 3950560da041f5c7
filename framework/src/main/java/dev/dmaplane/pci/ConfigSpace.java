package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.ArrayList;
import java.util.BitSet;
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
 * <p>Size: about 600 lines, the register file and its reset-value builder in one class; issue 11 moves the builder out.
 */
public final class ConfigSpace {
    /** Bytes of PCI Express config space ({@code PCI_CFG_SPACE_EXP_SIZE}). */
    public static final int SIZE = CFG_SPACE_EXP_SIZE;
    /** The PCI Find Capability loop bound the kernel uses ({@code PCI_FIND_CAP_TTL}). */
    private static final int CAP_TTL = 48;

    private final byte[] data = new byte[SIZE];
    private final byte[] wmask = new byte[SIZE];
    private final byte[] w1cmask = new byte[SIZE];
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

    private ConfigSpace(AtomicInteger writes) {
        this.writes = writes;
    }

    /** A capability found in the list ({@code lspci -v} "Capabilities: [offset] name"). */
    public record Capability(int id, int offset, boolean extended, int version) {
        /** The name {@code lspci} prints for this capability. */
        public String name() {
            if (extended) {
                return id == EXT_CAP_ID_ACS ? "Access Control Services"
                        : String.format("Extended Capability ID %#06x", id);
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
     * write-one-to-clear bits written as one are cleared.
     *
     * @throws ErrnoException {@code EINVAL} for another size, an offset outside the space or a misaligned access
     */
    public void write(int offset, int size, int value) {
        checkAccess(offset, size);
        synchronized (this) {
            if (!present) {
                return;
            }
            store(offset, size, value);
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
        }
    }

    /** Told of every completed {@link #write} after the registers changed, once {@code write} released this space's lock. */
    interface WriteListener {
        void written(int offset, int size);
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
            System.arraycopy(powerOn, 0, data, 0, SIZE);
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
        int count = isBridgeHeader() ? 2 : 6;
        if (index < 0 || index >= count) {
            throw new ErrnoException(Errno.EINVAL, "BAR index " + index + " is outside 0.." + (count - 1));
        }
        int lo = read(BASE_ADDRESS_0 + 4 * index, 4);
        if ((lo & BASE_ADDRESS_SPACE_IO) != 0) {
            return lo & ~0x3L & 0xFFFF_FFFFL;
        }
        long addr = lo & BASE_ADDRESS_MEM_MASK & 0xFFFF_FFFFL;
        if ((lo & BASE_ADDRESS_MEM_TYPE_MASK) == BASE_ADDRESS_MEM_TYPE_64 && index + 1 < count) {
            addr |= (read(BASE_ADDRESS_0 + 4 * (index + 1), 4) & 0xFFFF_FFFFL) << 32;
        }
        return addr;
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
        List<Capability> out = new ArrayList<>();
        if ((status() & STATUS_CAP_LIST) != 0) {
            int pos = read(CAPABILITY_LIST, 1) & ~3;
            BitSet seen = new BitSet(CFG_SPACE_SIZE);
            for (int ttl = CAP_TTL; pos >= 0x40 && ttl > 0 && !seen.get(pos); ttl--) {
                seen.set(pos);
                out.add(new Capability(read(pos + CAP_LIST_ID, 1), pos, false, 0));
                pos = read(pos + CAP_LIST_NEXT, 1) & ~3;
            }
        }
        int pos = CFG_SPACE_SIZE;
        BitSet seen = new BitSet(SIZE);
        for (int ttl = (SIZE - CFG_SPACE_SIZE) / 8; pos >= CFG_SPACE_SIZE && ttl > 0 && !seen.get(pos); ttl--) {
            int header = read(pos, 4);
            if (header == 0 || header == -1) {
                break;
            }
            seen.set(pos);
            out.add(new Capability(header & 0xFFFF, pos, true, (header >>> 16) & 0xF));
            pos = (header >>> 20) & ~3;
        }
        return List.copyOf(out);
    }

    /** The offset of standard capability {@code id} ({@code pci_find_capability}). */
    public OptionalInt findCapability(int id) {
        return capabilities().stream().filter(c -> !c.extended() && c.id() == id)
                .mapToInt(Capability::offset).findFirst();
    }

    /** The offset of extended capability {@code id} ({@code pci_find_ext_capability}). */
    public OptionalInt findExtCapability(int id) {
        return capabilities().stream().filter(c -> c.extended() && c.id() == id)
                .mapToInt(Capability::offset).findFirst();
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

    private void init(int offset, int size, int value, int writable) {
        for (int i = 0; i < size; i++) {
            data[offset + i] = (byte) (value >>> (8 * i));
            wmask[offset + i] = (byte) (writable >>> (8 * i));
        }
        command = (data[COMMAND] & 0xFF) | (data[COMMAND + 1] & 0xFF) << 8;
    }

    private void initW1c(int offset, int size, int bits) {
        for (int i = 0; i < size; i++) {
            w1cmask[offset + i] = (byte) (bits >>> (8 * i));
        }
    }

    /**
     * Builds a config space as a device's hardware presents it at reset, plus the values firmware programmed
     * (bus numbers). Every function gets the Power Management capability; PCI Express functions the Express
     * capability carrying their port type.
     */
    public static final class Builder {
        private static final int PM_POS = 0x40;
        private static final int EXP_POS = 0x50;
        private static final int MSIX_POS = 0x90;
        private static final int MSI_POS = 0xA0;
        /** Multiple Message Capable is a 3-bit log2 field whose values above 5 are reserved: at most 32 vectors. */
        private static final int MSI_MAX_VECTORS = 32;
        /** Link speed encodings of Max Link Speed and Target Link Speed: 2 is 5 GT/s, 4 is 16 GT/s. */
        private static final int LINK_SPEED_5GT = 2;
        private static final int LINK_SPEED_16GT = 4;
        private static final int LINK_WIDTH_X16 = 16;

        private record BarDef(int index, long size, boolean is64, boolean prefetchable) {
        }

        private final int vendorId;
        private final int deviceId;
        private final int classCode;
        private int revision;
        private int subVendor;
        private int subDevice;
        private boolean multifunction;
        private PciPortType express;
        private final List<BarDef> bars = new ArrayList<>();
        private int msixVectors;
        private int msixBir;
        private long msixTable;
        private long msixPba;
        private boolean hasMsi;
        private int msiVectors;
        private boolean msi64;
        private boolean msiMask;
        private Acs acsCap;
        private Acs acsCtrl;
        private int portNumber;
        private int slotNumber;
        private int primary = -1;
        private int secondary;
        private int subordinate;

        private AtomicInteger writes;

        /** Counts this config space's writes in {@code counter}, shared by every config space of a topology. */
        Builder writeCounter(AtomicInteger counter) {
            this.writes = counter;
            return this;
        }

        private Builder(int vendorId, int deviceId, int classCode) {
            this.vendorId = vendorId;
            this.deviceId = deviceId;
            this.classCode = classCode;
        }

        public Builder revision(int rev) {
            this.revision = rev;
            return this;
        }

        public Builder subsystem(int vendor, int device) {
            this.subVendor = vendor;
            this.subDevice = device;
            return this;
        }

        public Builder multifunction(boolean mf) {
            this.multifunction = mf;
            return this;
        }

        /** Adds the PCI Express capability with this port type; bridge types get a type 1 header. */
        public Builder express(PciPortType type) {
            this.express = type;
            return this;
        }

        /** Adds a memory BAR of {@code size} bytes (a power of two, at least 4 KiB). */
        public Builder bar(int index, long size, boolean is64, boolean prefetchable) {
            bars.add(new BarDef(index, size, is64, prefetchable));
            return this;
        }

        /** Adds the MSI-X capability: {@code vectors} entries, table and PBA in BAR {@code bir}. */
        public Builder msix(int vectors, int bir, long tableOffset, long pbaOffset) {
            this.msixVectors = vectors;
            this.msixBir = bir;
            this.msixTable = tableOffset;
            this.msixPba = pbaOffset;
            return this;
        }

        /**
         * Adds the MSI capability (PCI Local Bus Spec 6.8.1): {@code vectors} (a power of two, 1..32) as Multiple
         * Message Capable, a 64-bit Message Address if {@code is64}, Mask and Pending Bits if {@code perVectorMask}.
         */
        public Builder msi(int vectors, boolean is64, boolean perVectorMask) {
            this.hasMsi = true;
            this.msiVectors = vectors;
            this.msi64 = is64;
            this.msiMask = perVectorMask;
            return this;
        }

        /** Adds the ACS extended capability with these Capability and (initial) Control registers. */
        public Builder acs(Acs capability, Acs control) {
            this.acsCap = capability;
            this.acsCtrl = control;
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
            this.portNumber = number;
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
            this.slotNumber = number;
            return this;
        }

        /** Sets a bridge's bus number registers, as firmware or {@code pci_scan_bridge} programs them. */
        public Builder busNumbers(int primaryBus, int secondaryBus, int subordinateBus) {
            this.primary = primaryBus;
            this.secondary = secondaryBus;
            this.subordinate = subordinateBus;
            return this;
        }

        /**
         * Lays out the registers.
         *
         * @throws ErrnoException {@code EINVAL} naming the first bad value
         */
        public ConfigSpace build() {
            checkId("vendor", vendorId, 0xFFFE);
            checkId("device", deviceId, 0xFFFF);
            checkId("subsystem vendor", subVendor, 0xFFFF);
            checkId("subsystem device", subDevice, 0xFFFF);
            checkId("revision", revision, 0xFF);
            if ((classCode & ~0xFFFFFF) != 0) {
                throw new ErrnoException(Errno.EINVAL, String.format("class code %#x does not fit 24 bits", classCode));
            }
            boolean bridge = express != null && express.isBridge();
            if (bridge && (classCode >>> 8) != 0x0604) {
                throw new ErrnoException(Errno.EINVAL, String.format(
                        "a %s needs class 0x0604xx (PCI bridge), not %#08x", express.label(), classCode));
            }
            ConfigSpace cs = new ConfigSpace(writes != null ? writes : new AtomicInteger());
            cs.init(VENDOR_ID, 2, vendorId, 0);
            cs.init(DEVICE_ID, 2, deviceId, 0);
            cs.init(COMMAND, 2, 0, COMMAND_MEMORY | COMMAND_MASTER | COMMAND_PARITY | COMMAND_SERR | COMMAND_INTX_DISABLE);
            cs.init(STATUS, 2, STATUS_CAP_LIST, 0);
            cs.initW1c(STATUS, 2, STATUS_ERROR_BITS);
            cs.init(CLASS_REVISION, 4, (classCode << 8) | revision, 0);
            cs.init(CACHE_LINE_SIZE, 1, 0, 0xFF);
            cs.init(HEADER_TYPE, 1, (bridge ? HEADER_TYPE_BRIDGE : HEADER_TYPE_NORMAL) | (multifunction ? HEADER_TYPE_MFD : 0), 0);
            cs.init(INTERRUPT_LINE, 1, 0, 0xFF);
            cs.init(INTERRUPT_PIN, 1, bridge ? 0 : 1, 0);
            if (bridge) {
                layoutBridge(cs);
            } else {
                if (primary >= 0) {
                    throw new ErrnoException(Errno.EINVAL, "bus numbers belong to bridges; this function has a type 0 header");
                }
                cs.init(SUBSYSTEM_VENDOR_ID, 2, subVendor, 0);
                cs.init(SUBSYSTEM_ID, 2, subDevice, 0);
            }
            layoutBars(cs, bridge ? 2 : 6);
            layoutCapabilities(cs);
            cs.pmPos = cs.findCapability(CAP_ID_PM).orElse(-1);
            cs.powerOn = cs.data.clone();
            return cs;
        }

        private void layoutBridge(ConfigSpace cs) {
            if (primary < 0) {
                throw new ErrnoException(Errno.EINVAL, "a bridge needs its primary/secondary/subordinate bus numbers");
            }
            if (!(primary < secondary && secondary <= subordinate && subordinate <= 0xFF)) {
                throw new ErrnoException(Errno.EINVAL, String.format(
                        "bridge bus numbers must satisfy primary < secondary <= subordinate <= 0xff: %02x/%02x/%02x",
                        primary, secondary, subordinate));
            }
            cs.init(PRIMARY_BUS, 1, primary, 0);
            cs.init(SECONDARY_BUS, 1, secondary, 0);
            cs.init(SUBORDINATE_BUS, 1, subordinate, 0);
            cs.initW1c(SEC_STATUS, 2, STATUS_ERROR_BITS);
            cs.init(MEMORY_BASE, 2, 0xFFF0, 0xFFF0);
            cs.init(MEMORY_LIMIT, 2, 0x0000, 0xFFF0);
            cs.init(PREF_MEMORY_BASE, 2, 0xFFF0 | PREF_RANGE_TYPE_64, 0xFFF0);
            cs.init(PREF_MEMORY_LIMIT, 2, PREF_RANGE_TYPE_64, 0xFFF0);
            cs.init(PREF_BASE_UPPER32, 4, -1, -1);
            cs.init(PREF_LIMIT_UPPER32, 4, 0, -1);
            cs.init(BRIDGE_CONTROL, 2, 0, 0x0FFF);
        }

        private void layoutBars(ConfigSpace cs, int count) {
            boolean[] used = new boolean[count];
            for (BarDef b : bars) {
                int last = b.is64 ? b.index + 1 : b.index;
                if (b.index < 0 || last >= count) {
                    throw new ErrnoException(Errno.EINVAL, "BAR " + b.index + (b.is64 ? " (64-bit, two registers)" : "")
                            + " does not fit the " + count + " BAR registers of this header");
                }
                if (used[b.index] || used[last]) {
                    throw new ErrnoException(Errno.EINVAL, "BAR " + b.index + " overlaps a register another BAR uses");
                }
                Bar.checkSize(b.index, b.size, b.is64);
                used[b.index] = true;
                used[last] = true;
                int flags = (b.is64 ? BASE_ADDRESS_MEM_TYPE_64 : BASE_ADDRESS_MEM_TYPE_32)
                        | (b.prefetchable ? BASE_ADDRESS_MEM_PREFETCH : 0);
                long mask = ~(b.size - 1);
                cs.init(BASE_ADDRESS_0 + 4 * b.index, 4, flags, (int) mask & BASE_ADDRESS_MEM_MASK);
                if (b.is64) {
                    cs.init(BASE_ADDRESS_0 + 4 * (b.index + 1), 4, 0, (int) (mask >>> 32));
                }
            }
        }

        private void layoutCapabilities(ConfigSpace cs) {
            List<Integer> chain = new ArrayList<>();
            chain.add(PM_POS);
            cs.init(PM_POS + PM_PMC, 2, 0x0003, 0);
            cs.init(PM_POS + PM_CTRL, 2, PM_CTRL_NO_SOFT_RESET, PM_CTRL_STATE_MASK);
            cs.init(PM_POS, 1, CAP_ID_PM, 0);
            if (express != null) {
                chain.add(EXP_POS);
                boolean slot = express == PciPortType.ROOT_PORT || express == PciPortType.DOWNSTREAM;
                cs.init(EXP_POS, 1, CAP_ID_EXP, 0);
                cs.init(EXP_POS + EXP_FLAGS, 2, 2 | (express.value() << 4) | (slot ? EXP_FLAGS_SLOT : 0), 0);
                // endpoints can Function Level Reset; Initiate FLR is writable and reads back as zero
                boolean flr = !express.isBridge();
                cs.init(EXP_POS + EXP_DEVCAP, 4, 0x0000_8001 | (flr ? EXP_DEVCAP_FLR : 0), 0);
                // PCIe Base Spec 7.5.3.4: Relaxed Ordering and No Snoop enabled, Max_Read_Request_Size 512 bytes
                cs.init(EXP_POS + EXP_DEVCTL, 2, EXP_DEVCTL_RELAX_EN | EXP_DEVCTL_NOSNOOP_EN | EXP_DEVCTL_READRQ_512B,
                        flr ? 0xFFFF : 0x7FFF);
                layoutLink(cs, slot);
            }
            if (msixVectors != 0) {
                layoutMsix(cs);
                chain.add(MSIX_POS);
            }
            if (hasMsi) {
                layoutMsi(cs);
                chain.add(MSI_POS);
            }
            cs.init(CAPABILITY_LIST, 1, chain.getFirst(), 0);
            for (int i = 0; i < chain.size(); i++) {
                cs.init(chain.get(i) + CAP_LIST_NEXT, 1, i + 1 < chain.size() ? chain.get(i + 1) : 0, 0);
            }
            if (acsCap != null) {
                if (!acsCap.containsAll(acsCtrl)) {
                    throw new ErrnoException(Errno.EINVAL, "ACS control " + acsCtrl + " enables bits the capability "
                            + acsCap + " lacks: " + acsCtrl.minus(acsCap));
                }
                cs.init(CFG_SPACE_SIZE, 4, EXT_CAP_ID_ACS | (1 << 16), 0);
                cs.init(CFG_SPACE_SIZE + ACS_CAP, 2, acsCap.bits(), 0);
                cs.init(CFG_SPACE_SIZE + ACS_CTRL, 2, acsCtrl.bits(), acsCap.bits());
            }
        }

        /**
         * The link registers of a 16 GT/s x16 link (PCIe Base Spec 7.5.3.6, 7.5.3.18-19): Supported Link Speeds up to
         * Max Link Speed, Target Link Speed at the highest of them; a Downstream Port above 5 GT/s reports Data Link
         * Layer Link Active and bandwidth changes (7.5.3.6); a port with a slot carries its Physical Slot Number.
         */
        private void layoutLink(ConfigSpace cs, boolean slot) {
            int maxSpeed = LINK_SPEED_16GT;
            boolean activeReporting = slot && maxSpeed > LINK_SPEED_5GT;
            cs.init(EXP_POS + EXP_LNKCAP, 4, (portNumber << 24) | (activeReporting ? EXP_LNKCAP_DLLLARC | EXP_LNKCAP_LBNC : 0)
                    | LINK_WIDTH_X16 << 4 | maxSpeed, 0);
            cs.init(EXP_POS + EXP_LNKCTL, 2, 0, 0x0FFF);
            cs.init(EXP_POS + EXP_LNKSTA, 2, LINK_WIDTH_X16 << 4 | maxSpeed, 0);
            if (slot) {
                cs.init(EXP_POS + EXP_SLTCAP, 4, slotNumber << 19, 0);
            }
            cs.init(EXP_POS + EXP_LNKCAP2, 4, ((1 << maxSpeed) - 1) << 1, 0);
            cs.init(EXP_POS + EXP_LNKCTL2, 2, maxSpeed, 0x0FFF);
        }

        private void layoutMsix(ConfigSpace cs) {
            if (msixVectors < 1 || msixVectors > 2048) {
                throw new ErrnoException(Errno.EINVAL, "MSI-X vector count must be 1..2048, not " + msixVectors);
            }
            BarDef bar = bars.stream().filter(b -> b.index == msixBir).findFirst().orElseThrow(() ->
                    new ErrnoException(Errno.EINVAL, "MSI-X table BAR " + msixBir + " is not a BAR of this function"));
            long tableBytes = (long) msixVectors * MSIX_ENTRY_SIZE;
            long pbaBytes = ((msixVectors + 63L) / 64) * 8;
            checkMsixRegion("table", msixTable, tableBytes, bar);
            checkMsixRegion("PBA", msixPba, pbaBytes, bar);
            if (msixTable < msixPba + pbaBytes && msixPba < msixTable + tableBytes) {
                throw new ErrnoException(Errno.EINVAL, String.format("MSI-X table at %#x and PBA at %#x overlap", msixTable, msixPba));
            }
            cs.init(MSIX_POS, 1, CAP_ID_MSIX, 0);
            cs.init(MSIX_POS + MSIX_FLAGS, 2, msixVectors - 1, MSIX_FLAGS_ENABLE | MSIX_FLAGS_MASKALL);
            cs.init(MSIX_POS + MSIX_TABLE, 4, (int) msixTable | msixBir, 0);
            cs.init(MSIX_POS + MSIX_PBA, 4, (int) msixPba | msixBir, 0);
        }

        private void layoutMsi(ConfigSpace cs) {
            if (msiVectors < 1 || msiVectors > MSI_MAX_VECTORS || Integer.bitCount(msiVectors) != 1) {
                throw new ErrnoException(Errno.EINVAL, "MSI vector count " + msiVectors
                        + " is not a power of two in 1.." + MSI_MAX_VECTORS);
            }
            int mmc = Integer.numberOfTrailingZeros(msiVectors) << 1;
            cs.init(MSI_POS, 1, CAP_ID_MSI, 0);
            cs.init(MSI_POS + MSI_FLAGS, 2, mmc | (msi64 ? MSI_FLAGS_64BIT : 0) | (msiMask ? MSI_FLAGS_MASKBIT : 0),
                    MSI_FLAGS_ENABLE | MSI_FLAGS_QSIZE);
            cs.init(MSI_POS + MSI_ADDRESS_LO, 4, 0, MSI_ADDRESS_LO_MASK);
            if (msi64) {
                cs.init(MSI_POS + MSI_ADDRESS_HI, 4, 0, -1);
            }
            cs.init(MSI_POS + (msi64 ? MSI_DATA_64 : MSI_DATA_32), 2, 0, 0xFFFF);
            if (msiMask) {
                int implemented = msiVectors == 32 ? -1 : (1 << msiVectors) - 1;
                cs.init(MSI_POS + (msi64 ? MSI_MASK_64 : MSI_MASK_32), 4, 0, implemented);
                cs.init(MSI_POS + (msi64 ? MSI_PENDING_64 : MSI_PENDING_32), 4, 0, 0);
            }
        }

        private static void checkMsixRegion(String what, long offset, long bytes, BarDef bar) {
            if (offset < 0 || (offset & 7) != 0 || offset + bytes > bar.size || offset > 0xFFFF_FFF8L) {
                throw new ErrnoException(Errno.EINVAL, String.format(
                        "MSI-X %s at offset %#x (%d bytes) must be 8-byte aligned and inside BAR %d of %#x bytes",
                        what, offset, bytes, bar.index, bar.size));
            }
        }

        private static void checkId(String what, int v, int max) {
            if (v < 0 || v > max) {
                throw new ErrnoException(Errno.EINVAL, String.format("%s ID %#x is outside 0..%#x", what, v, max));
            }
        }
    }
}
