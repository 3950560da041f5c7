package dev.dmaplane.p2pdma;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;

import java.util.List;
import java.util.Objects;

/**
 * A p2pmem allocation mapped for one client ({@code dma_map_sg} of P2P pages, which lands in
 * {@code pci_p2pdma_map_segment}): the address the client's DMA engine must use.
 *
 * @param client     the device the memory is mapped for
 * @param allocation the provider memory
 * @param direction  the DMA direction it was mapped for
 * @param mapType    {@link MapType#BUS_ADDR} (no IOMMU mapping) or {@link MapType#THRU_HOST_BRIDGE} (an IOVA)
 * @param dmaAddress the device address of the allocation's first byte
 */
public record P2pMapping(Device client, P2pAllocation allocation, DmaDirection direction, MapType mapType, long dmaAddress) {
    public P2pMapping {
        Objects.requireNonNull(client, "client");
        Objects.requireNonNull(allocation, "allocation");
        Objects.requireNonNull(direction, "direction");
        Objects.requireNonNull(mapType, "mapType");
    }

    /** The device-side segments: one, since the allocation is contiguous on both sides. */
    public List<DmaSegment> segments() {
        return List.of(new DmaSegment(dmaAddress, allocation.size()));
    }
}
