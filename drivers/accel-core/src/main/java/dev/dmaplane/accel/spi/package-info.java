/** What an accelerator driver implements to put a device under the accelerator core (drm_driver, ttm_device_funcs). */
@Export
@Version("1.0.0")
package dev.dmaplane.accel.spi;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
