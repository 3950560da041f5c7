package dev.dmaplane.runtime.impl;

import dev.dmaplane.device.Driver;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;

/**
 * The PCI hierarchy as pciutils shows it: {@code lspci -tv} (the tree, each endpoint with its bound driver), a
 * flat list in the shape of {@code lspci -nnk} (every function with its IDs, IOMMU group and "Kernel driver in
 * use"); the options of the real tool are the framework's {@code PciTopology.lspci}.
 */
final class PciView {
    private PciView() {
    }

    /** The tree and the flat list, as {@code dmaplane:lspci} prints them. */
    static String treeAndList(Machine machine) {
        return machine.pci().lspciTree() + "\n" + list(machine);
    }

    /** One line per function: BDF, class code, {@code [vendor:device]}, IOMMU group, bound driver. */
    static String list(Machine machine) {
        StringBuilder sb = new StringBuilder();
        sb.append(String.format("%-13s %-8s %-11s %-6s %s%n", "BDF", "CLASS", "ID", "GROUP", "DRIVER"));
        for (PciFunction fn : machine.pci().functions()) {
            String group = machine.iommu().groupOf(fn).map(IommuGroup::id).map(String::valueOf).orElse("-");
            sb.append(String.format("%-13s %06x   %04x:%04x   %-6s %s%n", fn.name(), fn.classCode(), fn.vendorId(),
                    fn.deviceId(), group, fn.driver().map(Driver::name).orElse("-")));
        }
        return sb.toString().stripTrailing();
    }
}
