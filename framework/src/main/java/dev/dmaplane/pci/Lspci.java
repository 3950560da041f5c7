package dev.dmaplane.pci;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Collectors;

import static dev.dmaplane.pci.PciRegs.*;

/** Text renderings in the shape of pciutils' {@code lspci -tv} and {@code lspci -vv -s}. */
final class Lspci {
    private Lspci() {
    }

    private static final Map<Integer, String> CLASS_NAMES = Map.ofEntries(
            Map.entry(0x0100, "SCSI storage controller"), Map.entry(0x0101, "IDE interface"),
            Map.entry(0x0104, "RAID bus controller"), Map.entry(0x0106, "SATA controller"),
            Map.entry(0x0108, "Non-Volatile memory controller"), Map.entry(0x0180, "Mass storage controller"),
            Map.entry(0x0200, "Ethernet controller"), Map.entry(0x0207, "Infiniband controller"),
            Map.entry(0x0280, "Network controller"), Map.entry(0x0300, "VGA compatible controller"),
            Map.entry(0x0302, "3D controller"), Map.entry(0x0380, "Display controller"),
            Map.entry(0x0600, "Host bridge"), Map.entry(0x0604, "PCI bridge"),
            Map.entry(0x0880, "System peripheral"), Map.entry(0x0b40, "Co-processor"),
            Map.entry(0x0c03, "USB controller"), Map.entry(0x1200, "Processing accelerators"));

    /** The name lspci gives the base class and subclass of {@code classCode}. */
    static String className(int classCode) {
        int sub = classCode >>> 8;
        return CLASS_NAMES.getOrDefault(sub, String.format("Class %04x", sub));
    }

    // lspci -tv

    static String tree(List<HostBridge> hosts) {
        List<String> out = new ArrayList<>();
        StringBuilder line = new StringBuilder("-");
        if (hosts.size() == 1) {
            PciBus root = hosts.getFirst().rootBus();
            line.append(String.format("[%04x:%02x]-", root.domain(), root.number()));
            bus(root, line, line.length(), out);
        } else {
            int p = line.length();
            for (int i = 0; i < hosts.size(); i++) {
                PciBus root = hosts.get(i).rootBus();
                line.setLength(p);
                line.append(i + 1 < hosts.size() ? "+-" : "\\-").append(String.format("[%04x:%02x]-", root.domain(), root.number()));
                bus(root, line, line.length(), out);
            }
        }
        return out.stream().map(String::stripTrailing).collect(Collectors.joining("\n", "", "\n"));
    }

    private static void bus(PciBus bus, StringBuilder line, int p, List<String> out) {
        List<PciFunction> devs = bus.devices();
        line.setLength(p);
        if (devs.isEmpty()) {
            emit(line, out);
        } else if (devs.size() == 1) {
            line.append("--");
            dev(devs.getFirst(), line, line.length(), out);
        } else {
            for (int i = 0; i < devs.size(); i++) {
                line.setLength(p);
                line.append(i + 1 < devs.size() ? "+-" : "\\-");
                dev(devs.get(i), line, p + 2, out);
            }
        }
    }

    private static void dev(PciFunction fn, StringBuilder line, int p, List<String> out) {
        line.setLength(p);
        line.append(String.format("%02x.%x", fn.bdf().device(), fn.bdf().function()));
        Optional<PciBus> sub = fn.subordinate();
        if (sub.isPresent()) {
            ConfigSpace cs = fn.configSpace();
            int sec = cs.secondaryBus();
            int subord = cs.subordinateBus();
            line.append(sec == subord ? String.format("-[%02x]-", sec) : String.format("-[%02x-%02x]-", sec, subord));
            line.append('-');
            bus(sub.get(), line, line.length(), out);
        } else {
            line.append("  ").append(describe(fn));
            emit(line, out);
        }
    }

    /** Prints the line, then blanks it to the vertical connectors still open below, as lspci's tree does. */
    private static void emit(StringBuilder line, List<String> out) {
        out.add(line.toString());
        for (int i = 0; i < line.length(); i++) {
            char c = line.charAt(i);
            line.setCharAt(i, c == '+' || c == '|' ? '|' : ' ');
        }
    }

    private static String describe(PciFunction fn) {
        if (fn.absence().isPresent()) {
            return "<absent> " + fn.bdf() + " (" + fn.absence().get() + ")";
        }
        StringBuilder sb = new StringBuilder();
        sb.append(className(fn.classCode()))
                .append(String.format(" [%04x:%04x] ", fn.vendorId(), fn.deviceId()))
                .append(fn.bdf());
        fn.model().ifPresent(m -> sb.append(" model=").append(m));
        fn.driver().ifPresent(d -> sb.append(" driver=").append(d.name()));
        return sb.toString();
    }

    // lspci -vv -s

    static String verbose(PciFunction fn, int iommuGroup) {
        if (fn.absence().isPresent()) {
            // config reads of an empty slot return all-ones, so there is nothing to decode
            return fn.bdf() + " <absent>: " + fn.absence().get() + "\n";
        }
        ConfigSpace cs = fn.configSpace();
        StringBuilder sb = new StringBuilder();
        sb.append(String.format("%s %s [%04x]: Device %04x:%04x", fn.bdf(), className(fn.classCode()),
                fn.classCode() >>> 8, fn.vendorId(), fn.deviceId()));
        if (fn.revision() != 0) {
            sb.append(String.format(" (rev %02x)", fn.revision()));
        }
        sb.append('\n');
        if (!fn.isBridge() && (fn.subsystemVendorId() != 0 || fn.subsystemId() != 0)) {
            sb.append(String.format("\tSubsystem: Device %04x:%04x%n", fn.subsystemVendorId(), fn.subsystemId()));
        }
        int cmd = cs.command();
        sb.append(String.format("\tControl: I/O%s Mem%s BusMaster%s SpecCycle%s MemWINV%s VGASnoop%s ParErr%s Stepping%s"
                        + " SERR%s FastB2B%s DisINTx%s%n", pm(cmd, COMMAND_IO), pm(cmd, COMMAND_MEMORY),
                pm(cmd, COMMAND_MASTER), pm(cmd, 0x8), pm(cmd, 0x10), pm(cmd, 0x20), pm(cmd, COMMAND_PARITY),
                pm(cmd, 0x80), pm(cmd, COMMAND_SERR), pm(cmd, 0x200), pm(cmd, COMMAND_INTX_DISABLE)));
        int st = cs.status();
        sb.append(String.format("\tStatus: Cap%s 66MHz%s UDF%s FastB2B%s ParErr%s DEVSEL=%s >TAbort%s <TAbort%s <MAbort%s"
                        + " >SERR%s <PERR%s INTx%s%n", pm(st, STATUS_CAP_LIST), pm(st, 0x20), pm(st, 0x40), pm(st, 0x80),
                pm(st, 0x100), devsel(st), pm(st, 0x0800), pm(st, 0x1000), pm(st, 0x2000), pm(st, 0x4000), pm(st, 0x8000),
                pm(st, 0x08)));
        sb.append("\tIOMMU group: ").append(iommuGroup).append('\n');
        for (Bar bar : fn.bars()) {
            sb.append(String.format("\tRegion %d: Memory at ", bar.index()));
            long a = bar.address();
            sb.append(a == 0 ? "<unassigned>" : String.format("%08x", a));
            sb.append(String.format(" (%s, %sprefetchable)", bar.is64Bit() ? "64-bit" : "32-bit", bar.prefetchable() ? "" : "non-"));
            if ((cmd & COMMAND_MEMORY) == 0) {
                sb.append(" [disabled]");
            }
            sb.append(" [size=").append(size(bar.size())).append("]\n");
        }
        if (fn.isBridge()) {
            sb.append(String.format("\tBus: primary=%02x, secondary=%02x, subordinate=%02x, sec-latency=0%n",
                    cs.primaryBus(), cs.secondaryBus(), cs.subordinateBus()));
            sb.append("\tMemory behind bridge: ").append(cs.memoryWindow()
                    .map(w -> String.format("%08x-%08x [size=%s]", w.base(), w.limit(), size(w.size())))
                    .orElse("[disabled]")).append(" [32-bit]\n");
            sb.append("\tPrefetchable memory behind bridge: ").append(cs.prefetchableWindow()
                    .map(w -> String.format("%016x-%016x [size=%s]", w.base(), w.limit(), size(w.size())))
                    .orElse("[disabled]")).append(" [64-bit]\n");
            int sec = cs.read(0x1e, 2);
            sb.append(String.format("\tSecondary status: 66MHz%s FastB2B%s ParErr%s DEVSEL=%s >TAbort%s <TAbort%s <MAbort%s"
                            + " <SERR%s <PERR%s%n", pm(sec, 0x20), pm(sec, 0x80), pm(sec, 0x100), devsel(sec), pm(sec, 0x0800),
                    pm(sec, 0x1000), pm(sec, 0x2000), pm(sec, 0x4000), pm(sec, 0x8000)));
            int brc = cs.read(0x3e, 2);
            sb.append(String.format("\tBridgeCtl: Parity%s SERR%s NoISA%s VGA%s VGA16%s MAbort%s >Reset%s FastB2B%s%n",
                    pm(brc, 0x01), pm(brc, 0x02), pm(brc, 0x04), pm(brc, 0x08), pm(brc, 0x10), pm(brc, 0x20), pm(brc, 0x40),
                    pm(brc, 0x80)));
            sb.append(String.format("\t\tPriDiscTmr%s SecDiscTmr%s DiscTmrStat%s DiscTmrSERREn%s%n", pm(brc, 0x100),
                    pm(brc, 0x200), pm(brc, 0x400), pm(brc, 0x800)));
        }
        for (ConfigSpace.Capability c : cs.capabilities()) {
            capability(sb, fn, c);
        }
        fn.driver().ifPresent(d -> sb.append("\tKernel driver in use: ").append(d.name()).append('\n'));
        fn.model().ifPresent(m -> {
            sb.append("\tDevice model: ").append(m);
            if (!fn.properties().isEmpty()) {
                sb.append(fn.properties().entrySet().stream().sorted(Map.Entry.comparingByKey())
                        .map(e -> e.getKey() + "=" + e.getValue()).collect(Collectors.joining(", ", " {", "}")));
            }
            sb.append('\n');
        });
        return sb.toString();
    }

    private static void capability(StringBuilder sb, PciFunction fn, ConfigSpace.Capability c) {
        ConfigSpace cs = fn.configSpace();
        int o = c.offset();
        if (c.extended()) {
            sb.append(String.format("\tCapabilities: [%03x v%d] ", o, c.version()));
            switch (c.id()) {
                case EXT_CAP_ID_ACS -> {
                    sb.append(c.name()).append('\n');
                    sb.append("\t\tACSCap:\t").append(Acs.of(cs.read(o + ACS_CAP, 2) & Acs.ALL_BITS).toLspci()).append('\n');
                    sb.append("\t\tACSCtl:\t").append(Acs.of(cs.read(o + ACS_CTRL, 2) & Acs.ALL_BITS).toLspci()).append('\n');
                }
                case EXT_CAP_ID_ERR -> LspciExtended.aer(sb, cs, o, fn.portType().orElse(null));
                case EXT_CAP_ID_DSN -> {
                    long serial = (cs.read(o + DSN_UPPER, 4) & 0xFFFF_FFFFL) << 32 | (cs.read(o + DSN_LOWER, 4) & 0xFFFF_FFFFL);
                    StringBuilder hex = new StringBuilder();
                    for (int shift = 56; shift >= 0; shift -= 8) {
                        hex.append(String.format(shift == 56 ? "%02x" : "-%02x", (serial >>> shift) & 0xFF));
                    }
                    sb.append(c.name()).append(' ').append(hex).append('\n');
                }
                case EXT_CAP_ID_SECPCI -> LspciExtended.secondaryExpress(sb, cs, o);
                case EXT_CAP_ID_PL_16GT -> sb.append(c.name()).append(" <?>\n");
                default -> sb.append(c.name()).append('\n');
            }
            return;
        }
        sb.append(String.format("\tCapabilities: [%02x] ", o));
        switch (c.id()) {
            case CAP_ID_PM -> {
                int pmc = cs.read(o + PM_PMC, 2);
                sb.append("Power Management version ").append(pmc & 7).append('\n');
                int[] auxCurrent = {0, 55, 100, 160, 220, 270, 320, 375};
                sb.append(String.format("\t\tFlags: PMEClk%s DSI%s D1%s D2%s AuxCurrent=%dmA PME(D0%s,D1%s,D2%s,D3hot%s,D3cold%s)%n",
                        pm(pmc, 0x8), pm(pmc, 0x20), pm(pmc, 0x200), pm(pmc, 0x400), auxCurrent[(pmc >>> 6) & 7],
                        pm(pmc, 0x800), pm(pmc, 0x1000), pm(pmc, 0x2000), pm(pmc, 0x4000), pm(pmc, 0x8000)));
                int ctrl = cs.read(o + PM_CTRL, 2);
                sb.append(String.format("\t\tStatus: D%d NoSoftRst%s PME-Enable%s DSel=%d DScale=%d PME%s%n",
                        ctrl & PM_CTRL_STATE_MASK, pm(ctrl, PM_CTRL_NO_SOFT_RESET), pm(ctrl, 0x100), (ctrl >>> 9) & 0xf,
                        (ctrl >>> 13) & 3, pm(ctrl, 0x8000)));
            }
            case CAP_ID_EXP -> {
                int flags = cs.read(o + EXP_FLAGS, 2);
                PciPortType t = PciPortType.of((flags & EXP_FLAGS_TYPE) >>> 4);
                boolean slotType = t == PciPortType.ROOT_PORT || t == PciPortType.DOWNSTREAM;
                sb.append(String.format("Express (v%d) %s%s, MSI 00%n", flags & EXP_FLAGS_VERS, t.label(),
                        slotType ? " (Slot" + pm(flags, EXP_FLAGS_SLOT) + ")" : ""));
                sb.append(LspciExpress.body(fn, o));
            }
            case CAP_ID_MSI -> {
                int ctl = cs.read(o + MSI_FLAGS, 2);
                sb.append(String.format("MSI: Enable%s Count=%d/%d Maskable%s 64bit%s%n", pm(ctl, MSI_FLAGS_ENABLE),
                        1 << ((ctl & MSI_FLAGS_QSIZE) >>> 4), 1 << ((ctl & MSI_FLAGS_QMASK) >>> 1),
                        pm(ctl, MSI_FLAGS_MASKBIT), pm(ctl, MSI_FLAGS_64BIT)));
                boolean is64 = (ctl & MSI_FLAGS_64BIT) != 0;
                sb.append("\t\tAddress: ");
                if (is64) {
                    sb.append(String.format("%08x", cs.read(o + MSI_ADDRESS_HI, 4)));
                }
                sb.append(String.format("%08x  Data: %04x%n", cs.read(o + MSI_ADDRESS_LO, 4),
                        cs.read(o + (is64 ? MSI_DATA_64 : MSI_DATA_32), 2)));
                if ((ctl & MSI_FLAGS_MASKBIT) != 0) {
                    sb.append(String.format("\t\tMasking: %08x  Pending: %08x%n", cs.read(o + (is64 ? MSI_MASK_64 : MSI_MASK_32), 4),
                            cs.read(o + (is64 ? MSI_PENDING_64 : MSI_PENDING_32), 4)));
                }
            }
            case CAP_ID_MSIX -> {
                int ctl = cs.read(o + MSIX_FLAGS, 2);
                int table = cs.read(o + MSIX_TABLE, 4);
                int pba = cs.read(o + MSIX_PBA, 4);
                sb.append(String.format("MSI-X: Enable%s Count=%d Masked%s%n", pm(ctl, MSIX_FLAGS_ENABLE),
                        (ctl & MSIX_FLAGS_QSIZE) + 1, pm(ctl, MSIX_FLAGS_MASKALL)));
                sb.append(String.format("\t\tVector table: BAR=%d offset=%08x%n", table & MSIX_BIR_MASK, table & ~MSIX_BIR_MASK));
                sb.append(String.format("\t\tPBA: BAR=%d offset=%08x%n", pba & MSIX_BIR_MASK, pba & ~MSIX_BIR_MASK));
            }
            default -> sb.append(c.name()).append('\n');
        }
    }

    /** DEVSEL timing of a status register, as lspci names it. */
    private static String devsel(int status) {
        return switch (status & 0x600) {
            case 0x000 -> "fast";
            case 0x200 -> "medium";
            case 0x400 -> "slow";
            default -> "??";
        };
    }

    /** A flag as lspci prints it: {@code +} when {@code bit} is set in {@code reg}, else {@code -}. */
    static String pm(int reg, int bit) {
        return (reg & bit) != 0 ? "+" : "-";
    }

    /** A size as lspci prints it: the largest of K/M/G/T that divides it exactly. */
    static String size(long bytes) {
        String[] suffix = {"", "K", "M", "G", "T"};
        int i = 0;
        while (i < suffix.length - 1 && bytes % 1024 == 0 && bytes != 0) {
            bytes /= 1024;
            i++;
        }
        return bytes + suffix[i];
    }
}
