package dev.dmaplane.pci;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * A PCI bus ({@code struct pci_bus}): its number, the bridge it hangs below ({@code bus->self}, none for a
 * root bus), the functions on it in devfn order and the buses below its bridges.
 */
public final class PciBus {
    private final HostBridge host;
    private final int number;
    private final PciFunction self;
    private final PciBus parent;
    private final List<PciFunction> devices = new ArrayList<>();
    private final List<PciBus> children = new ArrayList<>();

    PciBus(HostBridge host, int number, PciFunction self, PciBus parent) {
        this.host = host;
        this.number = number;
        this.self = self;
        this.parent = parent;
    }

    void addDevice(PciFunction fn) {
        devices.add(fn);
    }

    void addChild(PciBus bus) {
        children.add(bus);
    }

    /** The bus number, 0..255. */
    public int number() {
        return number;
    }

    /** The PCI domain (segment). */
    public int domain() {
        return host.domain();
    }

    /** The host bridge this bus descends from. */
    public HostBridge hostBridge() {
        return host;
    }

    /** The bridge whose secondary bus this is; empty for a root bus. */
    public Optional<PciFunction> self() {
        return Optional.ofNullable(self);
    }

    /** The bus above; empty for a root bus. */
    public Optional<PciBus> parent() {
        return Optional.ofNullable(parent);
    }

    /** Whether this is a root bus, directly below a host bridge ({@code pci_is_root_bus}). */
    public boolean isRoot() {
        return parent == null;
    }

    /** The functions on this bus, in devfn order. */
    public List<PciFunction> devices() {
        return List.copyOf(devices);
    }

    /** The secondary buses of the bridges on this bus, in devfn order of their bridges. */
    public List<PciBus> children() {
        return List.copyOf(children);
    }

    /** {@code DDDD:BB}, as sysfs names buses. */
    @Override
    public String toString() {
        return String.format("%04x:%02x", domain(), number);
    }
}
