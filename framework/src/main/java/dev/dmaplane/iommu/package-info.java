/**
 * The IOMMU model: the IOVA allocator of {@code drivers/iommu/iova.c} with its per-CPU range caches, and a
 * multi-level I/O page table in the manner of {@code io-pgtable-arm} / the VT-d second level.
 */
@Export
@Version("1.0.0")
package dev.dmaplane.iommu;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
