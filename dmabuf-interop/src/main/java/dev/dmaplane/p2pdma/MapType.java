package dev.dmaplane.p2pdma;

/** How a client reaches a provider's memory ({@code enum pci_p2pdma_map_type} in {@code include/linux/pci-p2pdma.h}). */
public enum MapType {
    /** No path the kernel trusts: mapping is refused ({@code PCI_P2PDMA_MAP_NOT_SUPPORTED}). */
    NOT_SUPPORTED,
    /**
     * A switch between them routes the traffic: the client uses the PCI bus address and no IOMMU is involved
     * ({@code PCI_P2PDMA_MAP_BUS_ADDR}).
     */
    BUS_ADDR,
    /**
     * The traffic crosses the host bridge: the memory is mapped like any other through the client's IOMMU domain
     * ({@code PCI_P2PDMA_MAP_THRU_HOST_BRIDGE}).
     */
    THRU_HOST_BRIDGE;

    /** The more restrictive of the two, for a set of clients: NOT_SUPPORTED over THRU_HOST_BRIDGE over BUS_ADDR. */
    public MapType worse(MapType other) {
        return rank(this) >= rank(other) ? this : other;
    }

    private static int rank(MapType t) {
        return switch (t) {
            case BUS_ADDR -> 0;
            case THRU_HOST_BRIDGE -> 1;
            case NOT_SUPPORTED -> 2;
        };
    }
}
