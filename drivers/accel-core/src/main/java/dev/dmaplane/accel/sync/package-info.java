/** Sync objects, binary and timeline (drm_syncobj), and sync_file export and import of a dma-buf's fences. */
@Export
@Version("1.0.0")
package dev.dmaplane.accel.sync;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
