package dev.dmaplane.iommu;

import org.osgi.annotation.versioning.ConsumerType;

/**
 * Receives one mapped range of an {@link IoPageTable} in a debug listing, like a line of the kernel's IOMMU debugfs
 * page-table dump: neighbouring leaves with contiguous physical addresses and equal permissions arrive merged.
 */
@ConsumerType
@FunctionalInterface
public interface MappingVisitor {
    /**
     * @param iova first IOVA of the range
     * @param phys physical address {@code iova} translates to
     * @param size bytes, a multiple of 4 KiB
     * @param prot {@link IoPageTable#PROT_READ} and/or {@link IoPageTable#PROT_WRITE}
     */
    void mapping(long iova, long phys, long size, int prot);
}
