/**
 * Device models: the emulated hardware behind PCI functions, as bundles ({@link dev.dmaplane.hw.DeviceModel}, the
 * way QEMU's device classes are), and the kit for writing one: register blocks, doorbells, DMA helpers.
 */
@Export
@Version("1.0.0")
package dev.dmaplane.hw;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
