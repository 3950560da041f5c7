/** The GPU on a plain class path: its driver bound on a machine, with the accelerator core, in one call. */
@Export
@Version("1.0.0")
package dev.dmaplane.driver.gpu.host;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
