package dev.dmaplane.vfio;

import dev.dmaplane.errno.ErrnoException;

import java.util.List;

/**
 * {@code struct vfio_iommu_type1_info} with its capabilities: the page sizes the domain maps with, the mappings the
 * container may still add ({@code VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL}) and the usable IOVA ranges
 * ({@code VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE}).
 */
public record IommuInfo(int flags, long iovaPgsizes, int dmaAvail, List<IovaRange> iovaRanges) {
    public IommuInfo {
        ErrnoException.requireNonNull(iovaRanges, "IommuInfo: iova ranges");
        iovaRanges = List.copyOf(iovaRanges);
    }
}
