/** The emulated NVMe controller ({@code model: nvme}): its registers, queues and commands (NVM Express Base Specification 2.0). */
@Export
@Version("1.0.0")
package dev.dmaplane.vfio.nvme;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
