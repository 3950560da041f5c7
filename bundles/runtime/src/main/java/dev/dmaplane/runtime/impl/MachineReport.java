package dev.dmaplane.runtime.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.pci.PciFunction;

import java.util.stream.Collectors;

/** Views of a machine's state shared by the shell commands and the query service. */
final class MachineReport {
    private MachineReport() {
    }

    /**
     * One line about a device beyond its name: for a PCI function its {@code [vendor:device]}, class code and
     * device model, as {@code lspci -nn} identifies it; for other devices their type.
     */
    static String describe(Device d) {
        if (d instanceof PciFunction f) {
            return String.format("[%04x:%04x] class %06x", f.vendorId(), f.deviceId(), f.classCode())
                    + f.model().map(m -> " model=" + m).orElse("");
        }
        return d.getClass().getSimpleName();
    }

    /** A match-table row as a person reads it. */
    static String describe(MatchEntry e) {
        return switch (e) {
            case MatchEntry.Pci p -> "pci" + id(" vendor ", p.vendor()) + id(" device ", p.device())
                    + id(" subvendor ", p.subVendor()) + id(" subdevice ", p.subDevice())
                    + (p.classMask() == 0 ? "" : String.format(" class %06x/%06x", p.classCode(), p.classMask()));
            case MatchEntry.Auxiliary a -> "auxiliary " + a.name();
        };
    }

    private static String id(String label, int v) {
        return v == MatchEntry.ANY_ID ? "" : label + String.format("%04x", v);
    }

    /** Driver's table rows joined. */
    static String describeTable(Driver d) {
        return d.matchTable().entries().stream().map(MachineReport::describe).collect(Collectors.joining("; "));
    }

    /** {@code 64 GiB}, {@code 12 KiB}, {@code 512 B}: binary units, exact when it divides. */
    static String bytes(long n) {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB"};
        int u = 0;
        double v = n;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return v == Math.rint(v) ? String.format("%d %s", (long) v, units[u]) : String.format("%.1f %s", v, units[u]);
    }
}
