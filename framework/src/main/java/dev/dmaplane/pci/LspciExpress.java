package dev.dmaplane.pci;

import java.math.BigDecimal;
import java.math.MathContext;

import static dev.dmaplane.pci.Lspci.pm;
import static dev.dmaplane.pci.PciRegs.EXP_DEVCAP;
import static dev.dmaplane.pci.PciRegs.EXP_DEVCTL;
import static dev.dmaplane.pci.PciRegs.EXP_DEVSTA;
import static dev.dmaplane.pci.PciRegs.EXP_FLAGS;
import static dev.dmaplane.pci.PciRegs.EXP_FLAGS_SLOT;
import static dev.dmaplane.pci.PciRegs.EXP_FLAGS_TYPE;
import static dev.dmaplane.pci.PciRegs.EXP_FLAGS_VERS;
import static dev.dmaplane.pci.PciRegs.EXP_LNKCAP;
import static dev.dmaplane.pci.PciRegs.EXP_LNKCAP2;
import static dev.dmaplane.pci.PciRegs.EXP_LNKCTL;
import static dev.dmaplane.pci.PciRegs.EXP_LNKCTL2;
import static dev.dmaplane.pci.PciRegs.EXP_LNKSTA;
import static dev.dmaplane.pci.PciRegs.EXP_SLTCAP;

/**
 * The body of the PCI Express capability as {@code lspci -vv} prints it (pciutils {@code ls-caps.c},
 * {@code cap_express_dev}/{@code _link}/{@code _slot}/{@code _root}/{@code _dev2}/{@code _link2}), decoded from the
 * registers (PCIe Base Spec 6.x section 7.5.3) so that a register the model sets wrong shows here as it would on a
 * real machine. Which lines and fields appear depends on the port type, as in pciutils.
 */
final class LspciExpress {
    private static final int SLTCTL = 0x18;
    private static final int SLTSTA = 0x1a;
    private static final int RTCTL = 0x1c;
    private static final int RTCAP = 0x1e;
    private static final int RTSTA = 0x20;
    private static final int DEVCAP2 = 0x24;
    private static final int DEVCTL2 = 0x28;
    private static final int LNKSTA2 = 0x32;

    private static final String[] L0S = {"<64ns", "<128ns", "<256ns", "<512ns", "<1us", "<2us", "<4us", "unlimited"};
    private static final String[] L1 = {"<1us", "<2us", "<4us", "<8us", "<16us", "<32us", "<64us", "unlimited"};
    private static final String[] SPEEDS = {"unknown", "2.5GT/s", "5GT/s", "8GT/s", "16GT/s", "32GT/s", "64GT/s"};
    private static final String[] INDICATOR = {"Unknown", "On", "Blink", "Off"};

    private final ConfigSpace cs;
    private final int base;
    private final PciPortType type;
    private final boolean slot;
    private final boolean memoryBar;
    private final boolean deviceZero;
    private final StringBuilder sb = new StringBuilder();

    private LspciExpress(PciFunction fn, int base) {
        this.cs = fn.configSpace();
        this.base = base;
        int flags = cs.read(base + EXP_FLAGS, 2);
        this.type = PciPortType.of((flags & EXP_FLAGS_TYPE) >>> 4);
        this.slot = (type == PciPortType.ROOT_PORT || type == PciPortType.DOWNSTREAM || type == PciPortType.PCIE_BRIDGE)
                && (flags & EXP_FLAGS_SLOT) != 0;
        this.memoryBar = !fn.bars().isEmpty();
        this.deviceZero = fn.bdf().device() == 0 && fn.bdf().function() == 0;
    }

    /** The lines after {@code Express (v2) ...} for the capability at {@code base} of {@code fn}. */
    static String body(PciFunction fn, int base) {
        LspciExpress e = new LspciExpress(fn, base);
        int version = fn.configSpace().read(base + EXP_FLAGS, 2) & EXP_FLAGS_VERS;
        boolean link = e.type != PciPortType.RC_END && e.type != PciPortType.RC_EC;
        e.device();
        if (link) {
            e.link();
        }
        if (e.slot) {
            e.slot();
        }
        if (e.type == PciPortType.ROOT_PORT || e.type == PciPortType.RC_EC) {
            e.root();
        }
        if (version >= 2) {
            e.device2();
            if (link) {
                e.link2();
            }
        }
        return e.sb.toString();
    }

    private int reg16(int off) {
        return cs.read(base + off, 2);
    }

    private int reg32(int off) {
        return cs.read(base + off, 4);
    }

    private boolean is(PciPortType... types) {
        for (PciPortType t : types) {
            if (type == t) {
                return true;
            }
        }
        return false;
    }

    private void line(String format, Object... args) {
        sb.append(String.format(format, args)).append('\n');
    }

    /** Device Capabilities, Control and Status (PCIe 7.5.3.3 to 7.5.3.5). */
    private void device() {
        int cap = reg32(EXP_DEVCAP);
        boolean endpoint = is(PciPortType.ENDPOINT, PciPortType.LEGACY_ENDPOINT);
        String latency = endpoint ? String.format(", Latency L0s %s, L1 %s", L0S[(cap >>> 6) & 7], L1[(cap >>> 9) & 7]) : "";
        line("\t\tDevCap:\tMaxPayload %d bytes, PhantFunc %d%s", 128 << (cap & 7), (1 << ((cap >>> 3) & 3)) - 1, latency);
        StringBuilder l = new StringBuilder("\t\t\tExtTag").append(pm(cap, 0x20));
        if (endpoint || is(PciPortType.UPSTREAM, PciPortType.PCI_BRIDGE)) {
            l.append(" AttnBtn").append(pm(cap, 0x1000)).append(" AttnInd").append(pm(cap, 0x2000))
                    .append(" PwrInd").append(pm(cap, 0x4000));
        }
        l.append(" RBE").append(pm(cap, 0x8000));
        boolean flrType = endpoint || type == PciPortType.RC_END;
        if (flrType) {
            l.append(" FLReset").append(pm(cap, 0x1000_0000));
        }
        if (is(PciPortType.ENDPOINT, PciPortType.UPSTREAM, PciPortType.PCI_BRIDGE)) {
            l.append(" SlotPowerLimit ").append(power((cap >>> 18) & 0xff, (cap >>> 26) & 3));
        }
        line("%s", l);

        int ctl = reg16(EXP_DEVCTL);
        line("\t\tDevCtl:\tCorrErr%s NonFatalErr%s FatalErr%s UnsupReq%s", pm(ctl, 1), pm(ctl, 2), pm(ctl, 4), pm(ctl, 8));
        String tail = (type == PciPortType.PCI_BRIDGE ? " BrConfRtry" + pm(ctl, 0x8000) : "")
                + (flrType && (cap & 0x1000_0000) != 0 ? " FLReset" + pm(ctl, 0x8000) : "");
        line("\t\t\tRlxdOrd%s ExtTag%s PhantFunc%s AuxPwr%s NoSnoop%s%s", pm(ctl, 0x10), pm(ctl, 0x100), pm(ctl, 0x200),
                pm(ctl, 0x400), pm(ctl, 0x800), tail);
        line("\t\t\tMaxPayload %d bytes, MaxReadReq %d bytes", 128 << ((ctl >>> 5) & 7), 128 << ((ctl >>> 12) & 7));

        int sta = reg16(EXP_DEVSTA);
        line("\t\tDevSta:\tCorrErr%s NonFatalErr%s FatalErr%s UnsupReq%s AuxPwr%s TransPend%s", pm(sta, 1), pm(sta, 2),
                pm(sta, 4), pm(sta, 8), pm(sta, 0x10), pm(sta, 0x20));
    }

    /** Link Capabilities, Control and Status (PCIe 7.5.3.6 to 7.5.3.8). */
    private void link() {
        int cap = reg32(EXP_LNKCAP);
        int aspm = (cap >>> 10) & 3;
        String[] support = {"not supported", "L0s", "L1", "L0s L1"};
        StringBuilder exit = new StringBuilder();
        if (aspm != 0) {
            exit.append(", Exit Latency ");
            if ((aspm & 1) != 0) {
                exit.append("L0s ").append(L0S[(cap >>> 12) & 7]);
            }
            if ((aspm & 2) != 0) {
                exit.append((aspm & 1) != 0 ? ", " : "").append("L1 ").append(L1[(cap >>> 15) & 7]);
            }
        }
        int capSpeed = cap & 0xf;
        int capWidth = (cap >>> 4) & 0x3f;
        line("\t\tLnkCap:\tPort #%d, Speed %s, Width x%d, ASPM %s%s", cap >>> 24, speed(capSpeed), capWidth,
                support[aspm], exit);
        line("\t\t\tClockPM%s Surprise%s LLActRep%s BwNot%s ASPMOptComp%s", pm(cap, 1 << 18), pm(cap, 1 << 19),
                pm(cap, 1 << 20), pm(cap, 1 << 21), pm(cap, 1 << 22));

        int ctl = reg16(EXP_LNKCTL);
        String[] enabled = {"Disabled", "L0s Enabled", "L1 Enabled", "L0s L1 Enabled"};
        String rcb = is(PciPortType.ROOT_PORT, PciPortType.ENDPOINT, PciPortType.LEGACY_ENDPOINT, PciPortType.PCI_BRIDGE)
                ? String.format(" RCB %d bytes,", (ctl & 8) != 0 ? 128 : 64) : "";
        line("\t\tLnkCtl:\tASPM %s;%s Disabled%s CommClk%s", enabled[ctl & 3], rcb, pm(ctl, 0x10), pm(ctl, 0x40));
        line("\t\t\tExtSynch%s ClockPM%s AutWidDis%s BWInt%s AutBWInt%s", pm(ctl, 0x80), pm(ctl, 0x100), pm(ctl, 0x200),
                pm(ctl, 0x400), pm(ctl, 0x800));

        int sta = reg16(EXP_LNKSTA);
        int staSpeed = sta & 0xf;
        int staWidth = (sta >>> 4) & 0x3f;
        line("\t\tLnkSta:\tSpeed %s%s, Width x%d%s", speed(staSpeed), compare(staSpeed, capSpeed), staWidth,
                compare(staWidth, capWidth));
        line("\t\t\tTrErr%s Train%s SlotClk%s DLActive%s BWMgmt%s ABWMgmt%s", pm(sta, 0x400), pm(sta, 0x800),
                pm(sta, 0x1000), pm(sta, 0x2000), pm(sta, 0x4000), pm(sta, 0x8000));
    }

    /** Slot Capabilities, Control and Status (PCIe 7.5.3.9 to 7.5.3.11). */
    private void slot() {
        int cap = reg32(EXP_SLTCAP);
        line("\t\tSltCap:\tAttnBtn%s PwrCtrl%s MRL%s AttnInd%s PwrInd%s HotPlug%s Surprise%s", pm(cap, 1), pm(cap, 2),
                pm(cap, 4), pm(cap, 8), pm(cap, 0x10), pm(cap, 0x40), pm(cap, 0x20));
        line("\t\t\tSlot #%d, PowerLimit %s; Interlock%s NoCompl%s", cap >>> 19, power((cap >>> 7) & 0xff, (cap >>> 15) & 3),
                pm(cap, 0x20000), pm(cap, 0x40000));
        int ctl = reg16(SLTCTL);
        line("\t\tSltCtl:\tEnable: AttnBtn%s PwrFlt%s MRL%s PresDet%s CmdCplt%s HPIrq%s LinkChg%s", pm(ctl, 1), pm(ctl, 2),
                pm(ctl, 4), pm(ctl, 8), pm(ctl, 0x10), pm(ctl, 0x20), pm(ctl, 0x1000));
        line("\t\t\tControl: AttnInd %s, PwrInd %s, Power%s Interlock%s", INDICATOR[(ctl >>> 6) & 3],
                INDICATOR[(ctl >>> 8) & 3], pm(ctl, 0x400), pm(ctl, 0x800));
        int sta = reg16(SLTSTA);
        line("\t\tSltSta:\tStatus: AttnBtn%s PowerFlt%s MRL%s CmdCplt%s PresDet%s Interlock%s", pm(sta, 1), pm(sta, 2),
                pm(sta, 0x20), pm(sta, 0x10), pm(sta, 0x40), pm(sta, 0x80));
        line("\t\t\tChanged: MRL%s PresDet%s LinkState%s", pm(sta, 4), pm(sta, 8), pm(sta, 0x100));
    }

    /** Root Capabilities, Control and Status (PCIe 7.5.3.12 to 7.5.3.14). */
    private void root() {
        line("\t\tRootCap: CRSVisible%s", pm(reg16(RTCAP), 1));
        int ctl = reg16(RTCTL);
        line("\t\tRootCtl: ErrCorrectable%s ErrNon-Fatal%s ErrFatal%s PMEIntEna%s CRSVisible%s", pm(ctl, 1), pm(ctl, 2),
                pm(ctl, 4), pm(ctl, 8), pm(ctl, 0x10));
        int sta = reg32(RTSTA);
        line("\t\tRootSta: PME ReqID %04x, PMEStatus%s PMEPending%s", sta & 0xffff, pm(sta, 0x10000), pm(sta, 0x20000));
    }

    /** Device Capabilities 2 and Device Control 2 (PCIe 7.5.3.15, 7.5.3.16). */
    private void device2() {
        int cap = reg32(DEVCAP2);
        StringBuilder l = new StringBuilder(String.format("\t\tDevCap2: Completion Timeout: %s, TimeoutDis%s NROPrPrP%s LTR%s",
                timeoutRanges(cap & 0xf), pm(cap, 0x10), pm(cap, 0x400), pm(cap, 0x800)));
        l.append(String.format("%n\t\t\t 10BitTagComp%s 10BitTagReq%s OBFF %s, ExtFmt%s EETLPPrefix%s", pm(cap, 1 << 16),
                pm(cap, 1 << 17), obffCap((cap >>> 18) & 3), pm(cap, 1 << 20), pm(cap, 1 << 21)));
        if ((cap & (1 << 21)) != 0) {
            int max = (cap >>> 22) & 3;
            l.append(", MaxEETLPPrefixes ").append(max != 0 ? max : 4);
        }
        l.append(String.format("%n\t\t\t EmergencyPowerReduction %s, EmergencyPowerReductionInit%s",
                reservedChoice((cap >>> 24) & 3, "Dev Specific", "Form Factor Dev Specific"), pm(cap, 1 << 26)));
        l.append(String.format("%n\t\t\t FRS%s", pm(cap, 1 << 31)));
        if (type == PciPortType.ROOT_PORT) {
            l.append(" LN System CLS ").append(reservedChoice((cap >>> 14) & 3, "64byte cachelines", "128byte cachelines"))
                    .append(',');
        }
        if (is(PciPortType.ROOT_PORT, PciPortType.ENDPOINT)) {
            String[] tph = {"TPHComp- ExtTPHComp-", "TPHComp+ ExtTPHComp-", "", "TPHComp+ ExtTPHComp+"};
            l.append(' ').append(tph[(cap >>> 12) & 3]);
        }
        if (is(PciPortType.ROOT_PORT, PciPortType.DOWNSTREAM)) {
            l.append(" ARIFwd").append(pm(cap, 0x20));
        }
        line("%s", l);
        boolean switchPort = is(PciPortType.ROOT_PORT, PciPortType.UPSTREAM, PciPortType.DOWNSTREAM);
        if (switchPort || memoryBar) {
            StringBuilder a = new StringBuilder("\t\t\t AtomicOpsCap:");
            if (switchPort) {
                a.append(" Routing").append(pm(cap, 0x40));
            }
            if (type == PciPortType.ROOT_PORT || memoryBar) {
                a.append(" 32bit").append(pm(cap, 0x80)).append(" 64bit").append(pm(cap, 0x100))
                        .append(" 128bitCAS").append(pm(cap, 0x200));
            }
            line("%s", a);
        }

        int ctl = reg16(DEVCTL2);
        String[] obff = {"Disabled", "Via message A", "Via message B", "Via WAKE#"};
        line("\t\tDevCtl2: Completion Timeout: %s, TimeoutDis%s LTR%s 10BitTagReq%s OBFF %s,%s", timeoutValue(ctl & 0xf),
                pm(ctl, 0x10), pm(ctl, 0x400), pm(ctl, 0x1000), obff[(ctl >>> 13) & 3],
                is(PciPortType.ROOT_PORT, PciPortType.DOWNSTREAM) ? " ARIFwd" + pm(ctl, 0x20) : "");
        boolean requester = is(PciPortType.ROOT_PORT, PciPortType.ENDPOINT, PciPortType.RC_END, PciPortType.LEGACY_ENDPOINT);
        if (switchPort || requester) {
            StringBuilder a = new StringBuilder("\t\t\t AtomicOpsCtl:");
            if (requester) {
                a.append(" ReqEn").append(pm(ctl, 0x40));
            }
            if (switchPort) {
                a.append(" EgressBlck").append(pm(ctl, 0x80));
            }
            line("%s", a);
        }
    }

    /** Link Capabilities 2, Control 2 and Status 2 (PCIe 7.5.3.18 to 7.5.3.20). */
    private void link2() {
        int cap = 0;
        // Link Capabilities 2 and Link Control 2 are reserved for endpoints other than device 0 function 0
        if (!(is(PciPortType.ENDPOINT, PciPortType.LEGACY_ENDPOINT) && !deviceZero)) {
            cap = reg32(EXP_LNKCAP2);
            if (cap != 0) {
                line("\t\tLnkCap2: Supported Link Speeds: %s, Crosslink%s Retimer%s 2Retimers%s DRS%s",
                        speedVector((cap >>> 1) & 0x7f), pm(cap, 0x100), pm(cap, 1 << 23), pm(cap, 1 << 24), pm(cap, 1 << 31));
            }
            int ctl = reg16(EXP_LNKCTL2);
            String target = (ctl & 0xf) == 0 ? "2.5GT/s" : (ctl & 0xf) < SPEEDS.length ? SPEEDS[ctl & 0xf] : "Unknown";
            line("\t\tLnkCtl2: Target Link Speed: %s, EnterCompliance%s SpeedDis%s%s", target, pm(ctl, 0x10), pm(ctl, 0x20),
                    type == PciPortType.DOWNSTREAM ? ", Selectable De-emphasis: " + deemphasis((ctl >>> 6) & 1) : "");
            line("\t\t\t Transmit Margin: %s, EnterModifiedCompliance%s ComplianceSOS%s", margin((ctl >>> 7) & 7),
                    pm(ctl, 0x400), pm(ctl, 0x800));
            line("\t\t\t Compliance Preset/De-emphasis: %s", preset((ctl >>> 12) & 0xf));
        }
        int sta = reg16(LNKSTA2);
        String[] crosslink = {"unsupported", "Upstream Port", "Downstream Port", "incomplete"};
        line("\t\tLnkSta2: Current De-emphasis Level: %s, EqualizationComplete%s EqualizationPhase1%s",
                deemphasis(sta & 1), pm(sta, 2), pm(sta, 4));
        line("\t\t\t EqualizationPhase2%s EqualizationPhase3%s LinkEqualizationRequest%s", pm(sta, 8), pm(sta, 0x10),
                pm(sta, 0x20));
        StringBuilder l = new StringBuilder(String.format("\t\t\t Retimer%s 2Retimers%s CrosslinkRes: %s", pm(sta, 0x40),
                pm(sta, 0x80), crosslink[(sta >>> 8) & 3]));
        if (is(PciPortType.ROOT_PORT, PciPortType.DOWNSTREAM, PciPortType.PCIE_BRIDGE) && (cap & (1 << 31)) != 0) {
            l.append(String.format(", DRS%s%n\t\t\t DownstreamComp: %s", pm(sta, 0x8000), component((sta >>> 12) & 7)));
        }
        line("%s", l);
    }

    private static String speed(int code) {
        return code < SPEEDS.length ? SPEEDS[code] : "unknown";
    }

    private String compare(int sta, int cap) {
        if (sta > cap) {
            return " (overdriven)";
        }
        if (sta == cap || is(PciPortType.ROOT_PORT, PciPortType.DOWNSTREAM, PciPortType.PCIE_BRIDGE)) {
            return "";
        }
        return " (downgraded)";
    }

    /** A power limit as a value and a scale (Slot Power Limit Value/Scale; 0xF0 to 0xFE above 250 W). */
    private static String power(int value, int scale) {
        if (scale == 0 && value == 0xff) {
            return ">600W";
        }
        int v = scale == 0 && value >= 0xf0 ? 250 + 25 * (value - 0xf0) : value;
        // printf's %g: six significant digits, trailing zeros dropped
        BigDecimal watts = BigDecimal.valueOf(v).movePointLeft(scale).round(new MathContext(6));
        return watts.stripTrailingZeros().toPlainString() + "W";
    }

    private static String reservedChoice(int code, String one, String two) {
        return switch (code) {
            case 1 -> one;
            case 2 -> two;
            case 3 -> "Reserved";
            default -> "Not Supported";
        };
    }

    private static String obffCap(int code) {
        return switch (code) {
            case 1 -> "Via message";
            case 2 -> "Via WAKE#";
            case 3 -> "Via message/WAKE#";
            default -> "Not Supported";
        };
    }

    private static String timeoutRanges(int code) {
        return switch (code) {
            case 0 -> "Not Supported";
            case 1 -> "Range A";
            case 2 -> "Range B";
            case 3 -> "Range AB";
            case 6 -> "Range BC";
            case 7 -> "Range ABC";
            case 14 -> "Range BCD";
            case 15 -> "Range ABCD";
            default -> "Unknown";
        };
    }

    private static String timeoutValue(int code) {
        return switch (code) {
            case 0 -> "50us to 50ms";
            case 1 -> "50us to 100us";
            case 2 -> "1ms to 10ms";
            case 5 -> "16ms to 55ms";
            case 6 -> "65ms to 210ms";
            case 9 -> "260ms to 900ms";
            case 10 -> "1s to 3.5s";
            case 13 -> "4s to 13s";
            case 14 -> "17s to 64s";
            default -> "Unknown";
        };
    }

    /** Supported Link Speeds, bit 0 for 2.5 GT/s: every rate up to the highest must be supported (PCIe 8.2.1). */
    private static String speedVector(int vector) {
        if ((vector & 0x60) != 0) {
            return "RsvdP";
        }
        String[] top = {"2.5GT/s", "2.5-5GT/s", "2.5-8GT/s", "2.5-16GT/s", "2.5-32GT/s"};
        for (int bit = 4; bit >= 0; bit--) {
            if ((vector & (1 << bit)) != 0) {
                return top[bit];
            }
        }
        return "Unknown";
    }

    private static String deemphasis(int code) {
        return code == 0 ? "-6dB" : "-3.5dB";
    }

    private static String margin(int code) {
        return switch (code) {
            case 0 -> "Normal Operating Range";
            case 1 -> "800-1200mV(full-swing)/400-700mV(half-swing)";
            case 2, 3, 4, 5 -> "200-400mV(full-swing)/100-200mV(half-swing)";
            default -> "Unknown";
        };
    }

    private static String preset(int code) {
        String[] presets = {"-6dB de-emphasis, 0dB preshoot", "-3.5dB de-emphasis, 0dB preshoot",
                "-4.4dB de-emphasis, 0dB preshoot", "-2.5dB de-emphasis, 0dB preshoot", "0dB de-emphasis, 0dB preshoot",
                "0dB de-emphasis, 1.9dB preshoot", "0dB de-emphasis, 2.5dB preshoot", "-6.0dB de-emphasis, 3.5dB preshoot",
                "-3.5dB de-emphasis, 3.5dB preshoot", "0dB de-emphasis, 3.5dB preshoot"};
        return code < presets.length ? presets[code] : "Unknown";
    }

    private static String component(int code) {
        return switch (code) {
            case 0 -> "Link Down - Not Determined";
            case 1 -> "Link Down - Not Present";
            case 2 -> "Link Down - Present";
            case 4 -> "Link Up - Present";
            case 5 -> "Link Up - Present and DRS Received";
            default -> "Reserved";
        };
    }
}
