package dev.dmaplane.dma.impl;

import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.iommu.IommuDomain;

import java.lang.foreign.Arena;
import java.util.List;

/**
 * A live DMA mapping as dma-debug's {@code struct dma_debug_entry} holds it, plus what is needed to undo it: the
 * domain and IOVA range it used, bounce slots, coherent backing. Made by the named factories, one per way a back
 * end maps.
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

    /** A contiguous range through IOVA {@code [iova, iova+iovaLength)} of a translating domain ({@code iommu_dma_map_page}). */
    static Mapping translated(Type type, long dmaAddr, long size, DmaDirection direction, IommuDomain domain, long iova,
                              long iovaLength, Throwable site) {
        return new Mapping(type, dmaAddr, size, direction, domain, iova, iovaLength, null, List.of(), null, null, -1, site);
    }

    /** A contiguous range the device reaches at its physical address ({@code dma_direct_map_page}), or a peer window. */
    static Mapping direct(Type type, long dmaAddr, long size, DmaDirection direction, Throwable site) {
        return new Mapping(type, dmaAddr, size, direction, null, -1, 0, null, List.of(), null, null, -1, site);
    }

    /** A contiguous range bounced through swiotlb slots ({@code swiotlb_map}). */
    static Mapping bounced(Type type, Swiotlb.Bounce bounce, long size, DmaDirection direction, Throwable site) {
        return new Mapping(type, bounce.tlbAddr(), size, direction, null, -1, 0, null, List.of(bounce), null, null, -1, site);
    }

    /** A scatter-gather table mapped into one IOVA range of a translating domain ({@code iommu_dma_map_sg}). */
    static Mapping translatedSg(MappedSg sg, IommuDomain domain, long iova, long iovaLength, Throwable site) {
        return new Mapping(Type.SG, sg.segments().getFirst().dmaAddress(), sg.length(), sg.direction(), domain, iova,
                iovaLength, sg, List.of(), null, null, -1, site);
    }

    /** A scatter-gather table mapped directly, with the entries that had to bounce ({@code dma_direct_map_sg}). */
    static Mapping directSg(MappedSg sg, List<Swiotlb.Bounce> bounces, Throwable site) {
        return new Mapping(Type.SG, sg.segments().getFirst().dmaAddress(), sg.length(), sg.direction(), null, -1, 0, sg,
                List.copyOf(bounces), null, null, -1, site);
    }

    /**
     * A coherent buffer on the pages at frame {@code pfn}, through IOVA of {@code domain} or directly when it is
     * null ({@code dma_alloc_attrs}).
     */
    static Mapping coherent(CoherentBuffer buffer, IommuDomain domain, long iova, long iovaLength, Arena arena, long pfn,
                            Throwable site) {
        return new Mapping(Type.COHERENT, buffer.dmaAddress(), buffer.size(), DmaDirection.BIDIRECTIONAL, domain, iova,
                iovaLength, null, List.of(), buffer, arena, pfn, site);
    }

    /** Whether the mapping used a translating domain's IOVA. */
    boolean translated() {
        return domain != null && iova >= 0;
    }
}
