/** The IOMMU: groups, domains with page tables and dirty tracking, the IOVA allocator, and fault records. */
@Export
@Version("1.1.0")
package dev.dmaplane.iommu;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
