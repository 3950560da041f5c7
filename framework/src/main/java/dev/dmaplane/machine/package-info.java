/** A whole simulated host: memory, PCI, IOMMU, driver core and trace, booted from a machine file. */
@Export
@Version("1.1.0")
package dev.dmaplane.machine;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
