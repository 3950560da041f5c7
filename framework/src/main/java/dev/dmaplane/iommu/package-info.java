/** The IOMMU: groups, domains with page tables, the IOVA allocator, and fault records. */
@Export
@Version("1.0.0")
package dev.dmaplane.iommu;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
