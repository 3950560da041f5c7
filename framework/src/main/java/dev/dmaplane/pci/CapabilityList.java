package dev.dmaplane.pci;

import dev.dmaplane.pci.ConfigSpace.Capability;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.OptionalInt;

import static dev.dmaplane.pci.PciRegs.CAPABILITY_LIST;
import static dev.dmaplane.pci.PciRegs.CAP_LIST_ID;
import static dev.dmaplane.pci.PciRegs.CAP_LIST_NEXT;
import static dev.dmaplane.pci.PciRegs.CFG_SPACE_SIZE;
import static dev.dmaplane.pci.PciRegs.STATUS_CAP_LIST;

/**
 * The walk of a function's capability lists, as {@code pci_find_capability} and {@code pci_find_ext_capability}
 * ({@code drivers/pci/pci.c}) follow them through config reads.
 * <p>
 * The standard list starts at the Capabilities Pointer ({@code 0x34}) when Status says there is one, each entry
 * naming the next with its low two bits ignored; a pointer below {@code 0x40} ends it, and at most
 * {@code PCI_FIND_CAP_TTL} entries are followed. The extended list starts at {@code 0x100}; a header of 0 or
 * all-ones ends it, and at most one entry per 8 bytes of extended space is followed. A pointer back to an entry
 * already seen ends either list, so a corrupt loop cannot repeat entries.
 */
final class CapabilityList {
    /** The PCI Find Capability loop bound the kernel uses ({@code PCI_FIND_CAP_TTL}). */
    private static final int CAP_TTL = 48;
    /** The extended list's bound: one header per 8 bytes of the space past the first 256 bytes. */
    private static final int EXT_CAP_TTL = (ConfigSpace.SIZE - CFG_SPACE_SIZE) / 8;

    private CapabilityList() {
    }

    /** The capabilities of {@code regs} in list order: the standard list, then the extended list. */
    static List<Capability> walk(ConfigSpace regs) {
        List<Capability> out = new ArrayList<>();
        if ((regs.status() & STATUS_CAP_LIST) != 0) {
            int pos = regs.read(CAPABILITY_LIST, 1) & ~3;
            BitSet seen = new BitSet(CFG_SPACE_SIZE);
            for (int ttl = CAP_TTL; pos >= 0x40 && ttl > 0 && !seen.get(pos); ttl--) {
                seen.set(pos);
                out.add(new Capability(regs.read(pos + CAP_LIST_ID, 1), pos, false, 0));
                pos = regs.read(pos + CAP_LIST_NEXT, 1) & ~3;
            }
        }
        int pos = CFG_SPACE_SIZE;
        BitSet seen = new BitSet(ConfigSpace.SIZE);
        for (int ttl = EXT_CAP_TTL; pos >= CFG_SPACE_SIZE && ttl > 0 && !seen.get(pos); ttl--) {
            int header = regs.read(pos, 4);
            if (header == 0 || header == -1) {
                break;
            }
            seen.set(pos);
            out.add(new Capability(header & 0xFFFF, pos, true, (header >>> 16) & 0xF));
            pos = (header >>> 20) & ~3;
        }
        return List.copyOf(out);
    }

    /** The offset of the first capability {@code id} of the standard ({@code !extended}) or extended list. */
    static OptionalInt find(ConfigSpace regs, int id, boolean extended) {
        return walk(regs).stream().filter(c -> c.extended() == extended && c.id() == id)
                .mapToInt(Capability::offset).findFirst();
    }
}
