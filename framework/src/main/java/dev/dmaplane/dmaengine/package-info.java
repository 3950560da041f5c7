/**
 * The dmaengine client API ({@code include/linux/dmaengine.h}, {@code Documentation/driver-api/dmaengine/client.rst}):
 * a {@link dev.dmaplane.dmaengine.DmaChannel} offered by a DMA controller's driver, descriptors prepared on it,
 * submitted for a cookie, started by {@code issuePending}, polled by {@code txStatus} or completed by a callback with
 * a {@link dev.dmaplane.dmaengine.DmaResult}. Addresses are the client's DMA addresses, from its own mappings for
 * the device that does the transfer.
 */
@Export
@Version("1.0.0")
package dev.dmaplane.dmaengine;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
