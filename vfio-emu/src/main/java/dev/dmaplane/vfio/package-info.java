/** VFIO for user-space drivers: vfio-pci, the container/group and iommufd front ends ({@code include/uapi/linux/vfio.h}). */
@Export
@Version("1.1.0")
package dev.dmaplane.vfio;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
