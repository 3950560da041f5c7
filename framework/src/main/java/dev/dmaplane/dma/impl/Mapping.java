package dev.dmaplane.dma.impl;

import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.iommu.IommuDomain;

import java.lang.foreign.Arena;
import java.util.List;

/**
 * A live DMA mapping as dma-debug's {@code struct dma_debug_entry} holds it, plus what is needed to undo it: the
 * domain and IOVA range it used, bounce slots, coherent backing.
 */
record Mapping(Type type, long dmaAddr, long size, DmaDirection direction, IommuDomain domain, long iova,
               long iovaLength, MappedSg sg, List<Swiotlb.Bounce> bounces, CoherentBuffer coherent, Arena arena,
               long pfn, Throwable site) {

    /** How the mapping was made ({@code dma_debug_type}). */
    enum Type {
        SINGLE, SG, COHERENT, RESOURCE,
        /** A peer's bus addresses handed out untranslated ({@link dev.dmaplane.dma.DmaApi#mapPeer}). */
        PEER;

        String apiName() {
            return switch (this) {
                case SINGLE -> "dma_map_single";
                case SG -> "dma_map_sg";
                case COHERENT -> "dma_alloc_coherent";
                case RESOURCE -> "dma_map_resource";
                case PEER -> "pci_p2pdma_bus_addr_map";
            };
        }
    }

    /** Whether the mapping used a translating domain's IOVA. */
    boolean translated() {
        return domain != null && iova >= 0;
    }
}
