package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.impl.BarRules;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.dmaplane.pci.PciRegs.*;

/**
 * A function's config registers at power-on, as its hardware strapping defines them (PCIe Base Spec 7.5): the header,
 * the BARs' size masks, and the capability list at fixed offsets (PM, Express with its link and slot registers,
 * MSI-X, MSI; ACS, AER, Device Serial Number, Secondary PCI Express and Physical Layer 16.0 GT/s in the extended
 * space), each value with the write mask and write-one-to-clear bits the hardware gives it.
 * {@link ConfigSpace.Builder} collects the settings; {@link #build} checks them and lays out the registers.
 */
final class ConfigLayout {
    private static final int PM_POS = 0x40;
    private static final int EXP_POS = 0x50;
    private static final int MSIX_POS = 0x90;
    private static final int MSI_POS = 0xA0;
    /** Multiple Message Capable is a 3-bit log2 field whose values above 5 are reserved: at most 32 vectors. */
    private static final int MSI_MAX_VECTORS = 32;
    /** Link speed encodings of Max Link Speed and Target Link Speed: 2 is 5 GT/s, 4 is 16 GT/s. */
    private static final int LINK_SPEED_5GT = 2;
    /** Link speed encoding of 8 GT/s, from which a port has the Secondary PCI Express capability (7.7.3). */
    static final int LINK_SPEED_8GT = 3;
    /** Link speed encoding of 16 GT/s, the highest modelled, with the Physical Layer 16.0 GT/s capability (7.7.5). */
    static final int LINK_SPEED_16GT = 4;
    /** Uncorrectable errors fatal at reset (PCIe Base Spec 7.8.4.4): DLP, Surprise Down, FCP, Receiver Overflow, Malformed TLP. */
    private static final int ERR_UNC_SEVER_DEFAULT = ERR_UNC_DLP | ERR_UNC_SURPDN | ERR_UNC_FCP | ERR_UNC_RX_OVER
            | ERR_UNC_MALF_TLP;

    /** A memory BAR as the function decodes it: register index, size, width and prefetchability. */
    record BarDef(int index, long size, boolean is64, boolean prefetchable) {
    }

    final int vendorId;
    final int deviceId;
    final int classCode;
    int revision;
    int subVendor;
    int subDevice;
    boolean multifunction;
    PciPortType express;
    final List<BarDef> bars = new ArrayList<>();
    int msixVectors;
    int msixBir;
    long msixTable;
    long msixPba;
    boolean hasMsi;
    int msiVectors;
    boolean msi64;
    boolean msiMask;
    Acs acsCap;
    Acs acsCtrl;
    boolean aer = true;
    Long serial;
    int linkSpeed = LINK_SPEED_16GT;
    int linkWidth = 16;
    int portNumber;
    int slotNumber;
    int primary = -1;
    int secondary;
    int subordinate;
    AtomicInteger writes;

    ConfigLayout(int vendorId, int deviceId, int classCode) {
        this.vendorId = vendorId;
        this.deviceId = deviceId;
        this.classCode = classCode;
    }

    /**
     * Lays out the registers.
     *
     * @throws ErrnoException {@code EINVAL} naming the first bad value
     */
    ConfigSpace build() {
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
        cs.recordPowerOn();
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
            int last = BarRules.lastRegister(b.index, b.is64);
            if (b.index < 0 || last >= count) {
                throw new ErrnoException(Errno.EINVAL, "BAR " + b.index + (b.is64 ? " (64-bit, two registers)" : "")
                        + " does not fit the " + count + " BAR registers of this header");
            }
            if (used[b.index] || used[last]) {
                throw new ErrnoException(Errno.EINVAL, "BAR " + b.index + " overlaps a register another BAR uses");
            }
            Bar.checkSize(b.index, b.size, b.is64);
            if (!BarRules.isPrefetchableAllowed(express, b.is64, b.prefetchable)) {
                throw new ErrnoException(Errno.EINVAL, "BAR " + b.index + " is 32-bit and prefetchable on a PCI Express"
                        + " Endpoint, whose prefetchable BARs must be 64-bit (PCIe Base Spec 7.5.1.2.1)");
            }
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
            cs.initW1c(EXP_POS + EXP_DEVSTA, 2, EXP_DEVSTA_CED | EXP_DEVSTA_NFED | EXP_DEVSTA_FED | EXP_DEVSTA_URD);
            if (!hasMsi && slot) {
                // a root or downstream port's services (AER, PME, hotplug) signal through one MSI vector
                hasMsi = true;
                msiVectors = 1;
                msi64 = true;
            }
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
        layoutExtended(cs);
    }

    /**
     * The extended capabilities from {@code 0x100}, each after the one before (PCIe Base Spec 7.6.3): ACS, then for a
     * PCI Express function AER (7.8.4), Device Serial Number (7.9.3), and for a link of 8 GT/s or more Secondary PCI
     * Express (7.7.3), of 16 GT/s Physical Layer 16.0 GT/s (7.7.5).
     */
    private void layoutExtended(ConfigSpace cs) {
        List<int[]> chain = new ArrayList<>();
        int pos = CFG_SPACE_SIZE;
        if (acsCap != null) {
            if (!acsCap.containsAll(acsCtrl)) {
                throw new ErrnoException(Errno.EINVAL, "ACS control " + acsCtrl + " enables bits the capability "
                        + acsCap + " lacks: " + acsCtrl.minus(acsCap));
            }
            cs.init(pos + ACS_CAP, 2, acsCap.bits(), 0);
            cs.init(pos + ACS_CTRL, 2, acsCtrl.bits(), acsCap.bits());
            chain.add(new int[]{pos, EXT_CAP_ID_ACS, 1});
            pos += ACS_SIZEOF;
        }
        if (express != null) {
            if (aer) {
                layoutAer(cs, pos);
                chain.add(new int[]{pos, EXT_CAP_ID_ERR, 2});
                pos += ERR_SIZEOF;
            }
            long dsn = serial != null ? serial : (long) vendorId << 48 | (long) deviceId << 32;
            cs.init(pos + DSN_LOWER, 4, (int) dsn, 0);
            cs.init(pos + DSN_UPPER, 4, (int) (dsn >>> 32), 0);
            chain.add(new int[]{pos, EXT_CAP_ID_DSN, 1});
            pos += DSN_SIZEOF;
            if (linkSpeed >= LINK_SPEED_8GT) {
                int lanes = (1 << linkWidth) - 1;
                cs.init(pos + SECPCI_LNKCTL3, 4, 0, 0x3);
                cs.init(pos + SECPCI_LANE_ERR, 4, 0, 0);
                cs.initW1c(pos + SECPCI_LANE_ERR, 4, lanes);
                cs.initSticky(pos + SECPCI_LANE_ERR, 4, lanes); // RW1CS (7.7.3.3)
                chain.add(new int[]{pos, EXT_CAP_ID_SECPCI, 1});
                pos += SECPCI_LANE_EQ_CTRL + align4(2 * linkWidth);
            }
            if (linkSpeed >= LINK_SPEED_16GT) {
                cs.initW1c(pos + PL16_LOCAL_PARITY, 4, (1 << linkWidth) - 1);
                cs.initSticky(pos + PL16_LOCAL_PARITY, 4, (1 << linkWidth) - 1); // RW1CS (7.7.5.4)
                chain.add(new int[]{pos, EXT_CAP_ID_PL_16GT, 1});
                pos += PL16_LANE_EQ_CTRL + align4(linkWidth);
            }
        }
        for (int i = 0; i < chain.size(); i++) {
            int[] c = chain.get(i);
            int next = i + 1 < chain.size() ? chain.get(i + 1)[0] : 0;
            cs.init(c[0], 4, c[1] | c[2] << EXT_CAP_VER_SHIFT | next << EXT_CAP_NEXT_SHIFT, 0);
        }
    }

    /**
     * The AER capability at reset (PCIe Base Spec 7.8.4): nothing logged or masked but Advisory Non-Fatal, the
     * spec's default severities, status bits write-one-to-clear, logs and settings sticky across FLR and hot reset;
     * a root port adds Root Error Command and Status.
     */
    private void layoutAer(ConfigSpace cs, int pos) {
        cs.init(pos + ERR_UNCOR_STATUS, 4, 0, 0);
        cs.initW1c(pos + ERR_UNCOR_STATUS, 4, ERR_UNC_IMPLEMENTED);
        cs.init(pos + ERR_UNCOR_MASK, 4, 0, ERR_UNC_IMPLEMENTED);
        cs.init(pos + ERR_UNCOR_SEVER, 4, ERR_UNC_SEVER_DEFAULT, ERR_UNC_IMPLEMENTED);
        cs.init(pos + ERR_COR_STATUS, 4, 0, 0);
        cs.initW1c(pos + ERR_COR_STATUS, 4, ERR_COR_IMPLEMENTED);
        cs.init(pos + ERR_COR_MASK, 4, ERR_COR_ADV_NFAT, ERR_COR_IMPLEMENTED);
        // 7.8.4: every register from the status to the Header Log is sticky (RW1CS, RWS, ROS)
        for (int reg = ERR_UNCOR_STATUS; reg < ERR_ROOT_COMMAND; reg += 4) {
            cs.initSticky(pos + reg, 4, -1);
        }
        if (express == PciPortType.ROOT_PORT) {
            cs.init(pos + ERR_ROOT_COMMAND, 4, 0, ERR_ROOT_CMD_ENABLES);
            cs.initW1c(pos + ERR_ROOT_STATUS, 4, 0x7F);
            cs.initSticky(pos + ERR_ROOT_STATUS, 4, -1);
            cs.initSticky(pos + ERR_ROOT_ERR_SRC, 4, -1);
        }
    }

    private static int align4(int bytes) {
        return (bytes + 3) & ~3;
    }

    /**
     * The link registers of a link of {@link #linkSpeed} and {@link #linkWidth} (16 GT/s x16 unless set) (PCIe Base Spec 7.5.3.6, 7.5.3.18-19): Supported Link Speeds up to
     * Max Link Speed, Target Link Speed at the highest of them; a Downstream Port above 5 GT/s reports Data Link
     * Layer Link Active and bandwidth changes (7.5.3.6); a port with a slot carries its Physical Slot Number.
     */
    private void layoutLink(ConfigSpace cs, boolean slot) {
        int maxSpeed = linkSpeed;
        boolean activeReporting = slot && maxSpeed > LINK_SPEED_5GT;
        cs.init(EXP_POS + EXP_LNKCAP, 4, (portNumber << 24) | (activeReporting ? EXP_LNKCAP_DLLLARC | EXP_LNKCAP_LBNC : 0)
                | linkWidth << 4 | maxSpeed, 0);
        cs.init(EXP_POS + EXP_LNKCTL, 2, 0, 0x0FFF);
        cs.init(EXP_POS + EXP_LNKSTA, 2, linkWidth << 4 | maxSpeed, 0);
        if (slot) {
            cs.init(EXP_POS + EXP_SLTCAP, 4, slotNumber << 19, 0);
        }
        cs.init(EXP_POS + EXP_LNKCAP2, 4, ((1 << maxSpeed) - 1) << 1, 0);
        cs.init(EXP_POS + EXP_LNKCTL2, 2, maxSpeed, 0x0FFF);
    }

    private void layoutMsix(ConfigSpace cs) {
        if (!BarRules.isMsixVectorCount(msixVectors)) {
            throw new ErrnoException(Errno.EINVAL, "MSI-X vector count must be 1..2048, not " + msixVectors);
        }
        BarDef bar = bars.stream().filter(b -> b.index == msixBir).findFirst().orElseThrow(() ->
                new ErrnoException(Errno.EINVAL, "MSI-X table BAR " + msixBir + " is not a BAR of this function"));
        long tableBytes = BarRules.msixTableBytes(msixVectors);
        long pbaBytes = BarRules.msixPbaBytes(msixVectors);
        checkMsixRegion("table", msixTable, tableBytes, bar);
        checkMsixRegion("PBA", msixPba, pbaBytes, bar);
        if (BarRules.msixRegionsOverlap(msixTable, tableBytes, msixPba, pbaBytes)) {
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
        if (!BarRules.msixRegionFits(offset, bytes, bar.size)) {
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
