package dev.dmaplane.pci;

import org.junit.jupiter.api.Test;

import java.util.List;

import static dev.dmaplane.pci.PciRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The capability list walk as {@code __pci_find_next_cap_ttl} and {@code pci_find_next_ext_capability}
 * ({@code drivers/pci/pci.c}) perform it: a next pointer below {@code 0x40} ends the standard list, a header of 0
 * ends the extended one, and a corrupt list that points back into itself ends instead of repeating entries.
 */
class CapabilityListTest {
    private static ConfigSpace endpoint() {
        return ConfigSpace.builder(0x1da0, 0x0001, 0x030200).express(PciPortType.ENDPOINT)
                .bar(0, 1L << 20, true, false).msix(8, 0, 0x2000, 0x3000).build();
    }

    @Test
    void theStandardListEndsAtAPointerBelow0x40AndTheExtendedAtAZeroHeader() {
        ConfigSpace cs = endpoint();
        List<ConfigSpace.Capability> all = CapabilityList.walk(cs);
        List<ConfigSpace.Capability> standard = all.stream().filter(c -> !c.extended()).toList();
        assertTrue(standard.size() >= 3, "PM, Express and MSI-X: " + all);
        int last = standard.getLast().offset();
        assertEquals(0, cs.read(last + CAP_LIST_NEXT, 1) & ~3, "the last entry names no next one");
        cs.init(last + CAP_LIST_NEXT, 1, 0x3C, 0);
        assertEquals(all, CapabilityList.walk(cs), "0x3c lies in the header: the list ends there");

        cs.init(CAPABILITY_LIST, 1, 0, 0);
        assertTrue(CapabilityList.walk(cs).stream().allMatch(ConfigSpace.Capability::extended),
                "no Capabilities Pointer, no standard list");
        cs.init(CFG_SPACE_SIZE, 4, 0, 0);
        assertEquals(List.of(), CapabilityList.walk(cs), "a zero header at 0x100: no extended list");
    }

    @Test
    void aListPointingBackIntoItselfEndsAfterEachEntryOnce() {
        ConfigSpace cs = endpoint();
        List<ConfigSpace.Capability> all = CapabilityList.walk(cs);
        List<ConfigSpace.Capability> standard = all.stream().filter(c -> !c.extended()).toList();
        List<ConfigSpace.Capability> extended = all.stream().filter(ConfigSpace.Capability::extended).toList();
        assertFalse(extended.isEmpty(), "AER at least: " + all);

        cs.init(standard.getLast().offset() + CAP_LIST_NEXT, 1, standard.getFirst().offset(), 0);
        int lastExt = extended.getLast().offset();
        int header = cs.read(lastExt, 4);
        cs.init(lastExt, 4, header & 0x000F_FFFF | CFG_SPACE_SIZE << 20, 0);

        assertEquals(all, CapabilityList.walk(cs));
        assertEquals(standard.getFirst().offset(), CapabilityList.find(cs, standard.getFirst().id(), false).getAsInt());
        assertTrue(CapabilityList.find(cs, 0x7F, false).isEmpty(), "a looping list still ends for an absent id");
        assertTrue(CapabilityList.find(cs, 0x7FF, true).isEmpty());
    }
}
