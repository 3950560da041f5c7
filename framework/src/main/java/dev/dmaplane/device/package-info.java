/** The driver core: devices, drivers with ID tables, probe/remove, device-managed resources, the auxiliary bus. */
@Export
@Version("1.2.0")
package dev.dmaplane.device;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
