package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;

/**
 * A set of Access Control Services bits, as in the ACS Capability and ACS Control registers
 * ({@code PCI_ACS_*} in {@code include/uapi/linux/pci_regs.h}; PCIe Base Spec, ACS Extended Capability).
 *
 * @param sv Source Validation
 * @param tb Translation Blocking
 * @param rr P2P Request Redirect
 * @param cr P2P Completion Redirect
 * @param uf Upstream Forwarding
 * @param ec P2P Egress Control
 * @param dt Direct Translated P2P
 */
public record Acs(boolean sv, boolean tb, boolean rr, boolean cr, boolean uf, boolean ec, boolean dt) {
    /** {@code PCI_ACS_SV}. */
    public static final int SV = 0x0001;
    /** {@code PCI_ACS_TB}. */
    public static final int TB = 0x0002;
    /** {@code PCI_ACS_RR}. */
    public static final int RR = 0x0004;
    /** {@code PCI_ACS_CR}. */
    public static final int CR = 0x0008;
    /** {@code PCI_ACS_UF}. */
    public static final int UF = 0x0010;
    /** {@code PCI_ACS_EC}. */
    public static final int EC = 0x0020;
    /** {@code PCI_ACS_DT}. */
    public static final int DT = 0x0040;
    /** Every bit this record models. */
    public static final int ALL_BITS = SV | TB | RR | CR | UF | EC | DT;

    private static final String[] NAMES = {"SV", "TB", "RR", "CR", "UF", "EC", "DT"};
    private static final String[] LSPCI = {"SrcValid", "TransBlk", "ReqRedir", "CmpltRedir", "UpstreamFwd",
            "EgressCtrl", "DirectTrans"};

    /** No bit set. */
    public static final Acs NONE = of(0);
    /**
     * The kernel's {@code REQ_ACS_FLAGS} ({@code drivers/iommu/iommu.c}): SV|RR|CR|UF, what a port must enforce
     * before the devices below it count as isolated from their peers.
     */
    public static final Acs REQUIRED = of(SV | RR | CR | UF);
    /** The bits a switch downstream port or root port usually implements (all but egress control). */
    public static final Acs PORT_DEFAULT_CAPABILITY = of(SV | TB | RR | CR | UF | DT);

    /**
     * The set with the given register bits.
     *
     * @throws ErrnoException {@code EINVAL} if a bit outside {@link #ALL_BITS} is set
     */
    public static Acs of(int bits) {
        if ((bits & ~ALL_BITS) != 0) {
            throw new ErrnoException(Errno.EINVAL, "ACS bits 0x" + Integer.toHexString(bits) + " include bits this model lacks"
                    + " (known: 0x" + Integer.toHexString(ALL_BITS) + ")");
        }
        return new Acs((bits & SV) != 0, (bits & TB) != 0, (bits & RR) != 0, (bits & CR) != 0, (bits & UF) != 0,
                (bits & EC) != 0, (bits & DT) != 0);
    }

    /**
     * The set named by short names ({@code SV}, {@code TB}, {@code RR}, {@code CR}, {@code UF}, {@code EC},
     * {@code DT}; case-insensitive).
     *
     * @throws ErrnoException {@code EINVAL} naming an unknown name
     */
    public static Acs ofNames(Collection<String> names) {
        ErrnoException.requireNonNull(names, "ACS flag names");
        int bits = 0;
        for (String n : names) {
            bits |= bitOf(n);
        }
        return of(bits);
    }

    /** The register bit for a short name such as {@code RR}. */
    public static int bitOf(String name) {
        String up = name == null ? "" : name.strip().toUpperCase(Locale.ROOT);
        for (int i = 0; i < NAMES.length; i++) {
            if (NAMES[i].equals(up)) {
                return 1 << i;
            }
        }
        throw new ErrnoException(Errno.EINVAL, "unknown ACS flag '" + name + "' (known: " + String.join(", ", NAMES) + ")");
    }

    /** The register value of this set. */
    public int bits() {
        return (sv ? SV : 0) | (tb ? TB : 0) | (rr ? RR : 0) | (cr ? CR : 0) | (uf ? UF : 0) | (ec ? EC : 0)
                | (dt ? DT : 0);
    }

    /** Whether every bit of {@code other} is set here. */
    public boolean containsAll(Acs other) {
        return (bits() & other.bits()) == other.bits();
    }

    /** This set plus {@code other}. */
    public Acs union(Acs other) {
        return of(bits() | other.bits());
    }

    /** This set less {@code other}. */
    public Acs minus(Acs other) {
        return of(bits() & ~other.bits());
    }

    /** The short names of the set bits, in register order. */
    public List<String> names() {
        List<String> out = new ArrayList<>();
        int b = bits();
        for (int i = 0; i < NAMES.length; i++) {
            if ((b & (1 << i)) != 0) {
                out.add(NAMES[i]);
            }
        }
        return List.copyOf(out);
    }

    /** The register as {@code lspci -vv} shows ACSCap/ACSCtl: {@code SrcValid+ TransBlk- ...}. */
    public String toLspci() {
        StringBuilder sb = new StringBuilder();
        int b = bits();
        for (int i = 0; i < LSPCI.length; i++) {
            if (i > 0) {
                sb.append(' ');
            }
            sb.append(LSPCI[i]).append((b & (1 << i)) != 0 ? '+' : '-');
        }
        return sb.toString();
    }

    @Override
    public String toString() {
        List<String> n = names();
        return n.isEmpty() ? "ACS[]" : "ACS" + n;
    }
}
