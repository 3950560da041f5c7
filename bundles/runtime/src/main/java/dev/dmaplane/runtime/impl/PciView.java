package dev.dmaplane.runtime.impl;

import dev.dmaplane.device.Driver;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.Bdf;
import dev.dmaplane.pci.PciFunction;

/**
 * The PCI hierarchy as pciutils shows it: {@code lspci -tv} (the tree, each endpoint with its bound driver), a
 * flat list in the shape of {@code lspci -nnk} (every function with its IDs, IOMMU group and "Kernel driver in
 * use"), and {@code lspci -vv -s BDF}.
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

    /**
     * {@code lspci -vv -s BDF}: IDs, command register (Mem, BusMaster), BARs, capabilities, IOMMU group, driver.
     *
     * @throws ErrnoException {@code EINVAL} for a malformed BDF, {@code ENODEV} if no function has it
     */
    static String verbose(Machine machine, String bdf) {
        return machine.pci().lspciVerbose(function(machine, bdf)).stripTrailing();
    }

    /**
     * {@code lspci -x -s BDF} ({@code -xxx}, {@code -xxxx} for 256 or 4096 {@code bytes}).
     *
     * @throws ErrnoException {@code EINVAL} for a malformed BDF, {@code ENODEV} if no function has it
     */
    static String hex(Machine machine, String bdf, int bytes) {
        return machine.pci().lspciHex(function(machine, bdf), bytes);
    }

    /** The bytes of config space {@code -x}, {@code -xxx} or {@code -xxxx} dumps. */
    static int hexBytes(String option) {
        return switch (option) {
            case "-x" -> 64;
            case "-xxx" -> 256;
            case "-xxxx" -> 4096;
            default -> throw new ErrnoException(Errno.EINVAL, "'" + option + "' is not -x, -xxx or -xxxx");
        };
    }

    private static PciFunction function(Machine machine, String bdf) {
        Bdf parsed = Bdf.parse(bdf);
        return machine.pci().find(parsed).orElseThrow(() -> new ErrnoException(Errno.ENODEV,
                "no PCI function " + parsed + " on this machine (dmaplane:lspci lists them)"));
    }
}
