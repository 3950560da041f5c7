package dev.dmaplane.pci;

import java.util.List;
import java.util.Objects;

/**
 * A host bridge ({@code struct pci_host_bridge}): a PCI domain's way into the CPU's address space, with its root
 * bus. {@link #p2pAllowed()} is the answer the p2pdma host-bridge whitelist
 * ({@code drivers/pci/p2pdma.c}) gives for peer-to-peer traffic routed through the root complex.
 */
public final class HostBridge {
    private final int domain;
    private final String name;
    private final boolean p2pAllowed;
    private final List<ConfigSpace.Window> windows;
    private PciBus rootBus;

    HostBridge(int domain, String name, boolean p2pAllowed, List<ConfigSpace.Window> windows) {
        this.domain = domain;
        this.name = Objects.requireNonNull(name, "name");
        this.p2pAllowed = p2pAllowed;
        this.windows = List.copyOf(windows);
    }

    void setRootBus(PciBus bus) {
        this.rootBus = bus;
    }

    public int domain() {
        return domain;
    }

    /** The host bridge's device name, {@code pciDDDD:BB} by default. */
    public String name() {
        return name;
    }

    /** Whether peer-to-peer DMA between root ports of this host bridge is allowed. */
    public boolean p2pAllowed() {
        return p2pAllowed;
    }

    /**
     * The memory apertures this host bridge decodes for its hierarchy ({@code bridge->windows}, from firmware's
     * {@code _CRS}): the parts of the 32-bit and the 64-bit MMIO windows its BARs and bridge windows were placed in,
     * inclusive, 32-bit first; empty when nothing below it has a BAR.
     */
    public List<ConfigSpace.Window> windows() {
        return windows;
    }

    public PciBus rootBus() {
        return rootBus;
    }

    @Override
    public String toString() {
        return name;
    }
}
