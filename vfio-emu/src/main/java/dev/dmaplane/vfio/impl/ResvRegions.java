package dev.dmaplane.vfio.impl;

import java.util.List;

/**
 * The reserved IOVA regions a device behind the IOMMU reports ({@code iommu_get_resv_regions}): on x86 the
 * interrupt window ({@code IOMMU_RESV_MSI}, {@code 0xfee00000}-{@code 0xfeefffff}) that DMA cannot reach. Both
 * front ends cut it out of the usable IOVAs: type 1 from its ranges, iommufd from an IOAS a device attaches to.
 */
public final class ResvRegions {
    /** The first IOVA of the x86 interrupt window. */
    public static final long MSI_START = 0xfee0_0000L;
    /** The last IOVA of the x86 interrupt window. */
    public static final long MSI_END = 0xfeef_ffffL;

    private ResvRegions() {
    }

    /** The reserved regions of every device here, {@code {start, last}} inclusive. */
    public static List<long[]> ofDevice() {
        return List.of(new long[]{MSI_START, MSI_END});
    }
}
