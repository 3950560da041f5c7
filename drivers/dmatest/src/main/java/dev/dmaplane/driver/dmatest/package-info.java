/**
 * What the dmatest driver found, for whoever watches it: one {@link dev.dmaplane.driver.dmatest.DmaTestResult}
 * per device it drives, registered as an OSGi service while the driver is bound (with its numbers also as service
 * properties, so code outside the framework's class space can read them), in the way the kernel's dmatest
 * reports its summary lines through dmesg and {@code /sys/module/dmatest/parameters/run}.
 */
@Export
@Version("1.0.0")
package dev.dmaplane.driver.dmatest;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
