/** iommufd for user-space drivers: {@code /dev/iommu} with IOAS and HWPT objects ({@code include/uapi/linux/iommufd.h}). */
@Export
@Version("1.1.0")
package dev.dmaplane.vfio.iommufd;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
