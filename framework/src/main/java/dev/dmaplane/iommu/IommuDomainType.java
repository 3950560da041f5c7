package dev.dmaplane.iommu;

/** Kinds of IOMMU domain ({@code IOMMU_DOMAIN_*} in {@code include/linux/iommu.h}). */
public enum IommuDomainType {
    /** Translating, managed by the DMA API: IOVAs are allocated per mapping ({@code IOMMU_DOMAIN_DMA}). */
    DMA(true),
    /** Pass-through: bus address equals physical address ({@code IOMMU_DOMAIN_IDENTITY}). */
    IDENTITY(false),
    /** Translating, its mappings set by its owner, e.g. VFIO/iommufd ({@code IOMMU_DOMAIN_UNMANAGED}). */
    UNMANAGED(true),
    /** Every access faults ({@code IOMMU_DOMAIN_BLOCKED}). */
    BLOCKED(false);

    private final boolean paging;

    IommuDomainType(boolean paging) {
        this.paging = paging;
    }

    /** Whether the domain has page tables ({@code __IOMMU_DOMAIN_PAGING}). */
    public boolean paging() {
        return paging;
    }
}
