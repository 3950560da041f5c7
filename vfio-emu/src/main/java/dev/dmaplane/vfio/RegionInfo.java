package dev.dmaplane.vfio;

import dev.dmaplane.errno.ErrnoException;

import java.util.List;

/**
 * {@code struct vfio_region_info}: a region's {@code VFIO_REGION_INFO_FLAG_*}, size and offset in the device file,
 * with the mmap-able areas of {@code VFIO_REGION_INFO_CAP_SPARSE_MMAP} (empty without the capability).
 */
public record RegionInfo(int index, int flags, long size, long offset, List<SparseArea> sparseMmap) {
    public RegionInfo {
        ErrnoException.requireNonNull(sparseMmap, "RegionInfo: sparse mmap areas");
        sparseMmap = List.copyOf(sparseMmap);
    }

    /** {@code struct vfio_region_sparse_mmap_area}. */
    public record SparseArea(long offset, long size) {
    }
}
