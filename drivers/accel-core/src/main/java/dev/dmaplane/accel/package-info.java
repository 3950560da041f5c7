/** The accelerator user API (DRM GEM and drivers/accel uAPI): contexts, buffer-object handles, PRIME, GPU virtual memory, submission. */
@Export
@Version("1.0.0")
package dev.dmaplane.accel;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
