/**
 * dma-buf ({@code Documentation/driver-api/dma-buf.rst}): buffers one driver exports and other devices import
 * through attachments and mappings valid for each importer's device, with dynamic importers told of moves,
 * exporters that may revoke, fd-like handles in user contexts, and a per-machine registry with a bufinfo view.
 */
@Export
@Version("1.1.0")
package dev.dmaplane.dmabuf;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
