package dev.dmaplane.pci;

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
    private PciBus rootBus;

    HostBridge(int domain, String name, boolean p2pAllowed) {
        this.domain = domain;
        this.name = Objects.requireNonNull(name, "name");
        this.p2pAllowed = p2pAllowed;
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

    public PciBus rootBus() {
        return rootBus;
    }

    @Override
    public String toString() {
        return name;
    }
}
