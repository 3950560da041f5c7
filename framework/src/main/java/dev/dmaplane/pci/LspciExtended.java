package dev.dmaplane.pci;

import static dev.dmaplane.pci.PciRegs.ERR_CAP;
import static dev.dmaplane.pci.PciRegs.ERR_CAP_FEP;
import static dev.dmaplane.pci.PciRegs.ERR_COR_MASK;
import static dev.dmaplane.pci.PciRegs.ERR_COR_STATUS;
import static dev.dmaplane.pci.PciRegs.ERR_HEADER_LOG;
import static dev.dmaplane.pci.PciRegs.ERR_ROOT_COMMAND;
import static dev.dmaplane.pci.PciRegs.ERR_ROOT_ERR_SRC;
import static dev.dmaplane.pci.PciRegs.ERR_ROOT_STATUS;
import static dev.dmaplane.pci.PciRegs.ERR_UNCOR_MASK;
import static dev.dmaplane.pci.PciRegs.ERR_UNCOR_SEVER;
import static dev.dmaplane.pci.PciRegs.ERR_UNCOR_STATUS;
import static dev.dmaplane.pci.PciRegs.SECPCI_LANE_ERR;
import static dev.dmaplane.pci.PciRegs.SECPCI_LNKCTL3;

/**
 * The bodies of the extended capabilities AER and Secondary PCI Express as {@code lspci -vv} prints them (pciutils
 * {@code ls-ecaps.c}, {@code cap_aer} and {@code cap_sec}), decoded from the registers (PCIe Base Spec 7.8.4, 7.7.3).
 */
final class LspciExtended {
    private LspciExtended() {
    }

    /** {@code Advanced Error Reporting} and its lines; a root port adds RootCmd, RootSta and ErrorSrc. */
    static void aer(StringBuilder sb, ConfigSpace cs, int o, PciPortType type) {
        sb.append("Advanced Error Reporting\n");
        uncorrectable(sb, "UESta", cs.read(o + ERR_UNCOR_STATUS, 4));
        uncorrectable(sb, "UEMsk", cs.read(o + ERR_UNCOR_MASK, 4));
        uncorrectable(sb, "UESvrt", cs.read(o + ERR_UNCOR_SEVER, 4));
        int ce = cs.read(o + ERR_COR_STATUS, 4);
        sb.append(String.format("\t\tCESta:\tRxErr%s BadTLP%s BadDLLP%s Rollover%s Timeout%s AdvNonFatalErr%s%n",
                f(ce, 0), f(ce, 6), f(ce, 7), f(ce, 8), f(ce, 12), f(ce, 13)));
        int cm = cs.read(o + ERR_COR_MASK, 4);
        sb.append(String.format("\t\tCEMsk:\tRxErr%s BadTLP%s BadDLLP%s Rollover%s Timeout%s AdvNonFatalErr%s%n",
                f(cm, 0), f(cm, 6), f(cm, 7), f(cm, 8), f(cm, 12), f(cm, 13)));
        int cap = cs.read(o + ERR_CAP, 4);
        sb.append(String.format("\t\tAERCap:\tFirst Error Pointer: %02x, ECRCGenCap%s ECRCGenEn%s ECRCChkCap%s ECRCChkEn%s%n"
                        + "\t\t\tMultHdrRecCap%s MultHdrRecEn%s TLPPfxPres%s HdrLogCap%s%n", cap & ERR_CAP_FEP,
                f(cap, 5), f(cap, 6), f(cap, 7), f(cap, 8), f(cap, 9), f(cap, 10), f(cap, 11), f(cap, 12)));
        sb.append(String.format("\t\tHeaderLog: %08x %08x %08x %08x%n", cs.read(o + ERR_HEADER_LOG, 4),
                cs.read(o + ERR_HEADER_LOG + 4, 4), cs.read(o + ERR_HEADER_LOG + 8, 4), cs.read(o + ERR_HEADER_LOG + 12, 4)));
        if (type == PciPortType.ROOT_PORT || type == PciPortType.RC_EC) {
            int cmd = cs.read(o + ERR_ROOT_COMMAND, 4);
            sb.append(String.format("\t\tRootCmd: CERptEn%s NFERptEn%s FERptEn%s%n", f(cmd, 0), f(cmd, 1), f(cmd, 2)));
            int st = cs.read(o + ERR_ROOT_STATUS, 4);
            sb.append(String.format("\t\tRootSta: CERcvd%s MultCERcvd%s UERcvd%s MultUERcvd%s%n"
                            + "\t\t\t FirstFatal%s NonFatalMsg%s FatalMsg%s IntMsg %d%n", f(st, 0), f(st, 1), f(st, 2),
                    f(st, 3), f(st, 4), f(st, 5), f(st, 6), (st >>> 27) & 0x1f));
            int src = cs.read(o + ERR_ROOT_ERR_SRC, 4);
            sb.append(String.format("\t\tErrorSrc: ERR_COR: %04x ERR_FATAL/NONFATAL: %04x%n", src & 0xFFFF, src >>> 16));
        }
    }

    /** {@code Secondary PCI Express} with Link Control 3 and the lanes Lane Error Status flags. */
    static void secondaryExpress(StringBuilder sb, ConfigSpace cs, int o) {
        sb.append("Secondary PCI Express\n");
        int ctl3 = cs.read(o + SECPCI_LNKCTL3, 2);
        sb.append(String.format("\t\tLnkCtl3: LnkEquIntrruptEn%s PerformEqu%s%n", f(ctl3, 1), f(ctl3, 0)));
        // pciutils reads the Lane Error Status as a word: lanes 16 and up do not show
        int lanes = cs.read(o + SECPCI_LANE_ERR, 2);
        sb.append("\t\tLaneErrStat: ");
        if (lanes == 0) {
            sb.append('0');
        } else {
            sb.append("LaneErr at lane:");
            for (int lane = 0; lane < 16; lane++) {
                if ((lanes & (1 << lane)) != 0) {
                    sb.append(' ').append(lane);
                }
            }
        }
        sb.append('\n');
    }

    private static void uncorrectable(StringBuilder sb, String name, int l) {
        sb.append(String.format("\t\t%s:\tDLP%s SDES%s TLP%s FCP%s CmpltTO%s CmpltAbrt%s UnxCmplt%s RxOF%s "
                        + "MalfTLP%s ECRC%s UnsupReq%s ACSViol%s%n", name, f(l, 4), f(l, 5), f(l, 12), f(l, 13),
                f(l, 14), f(l, 15), f(l, 16), f(l, 17), f(l, 18), f(l, 19), f(l, 20), f(l, 21)));
    }

    private static String f(int reg, int bit) {
        return (reg & (1 << bit)) != 0 ? "+" : "-";
    }
}
