/**
 * PCI peer-to-peer DMA ({@code drivers/pci/p2pdma.c}, {@code include/linux/pci-p2pdma.h},
 * {@code Documentation/driver-api/pci/p2pdma.rst}): how far apart a provider of device memory and its clients are
 * and how a client must address that memory ({@link MapType}), providers that hand out parts of a memory BAR
 * ({@link P2pMemory}), and mapping an allocation for a client: a PCI bus address when a switch routes between them,
 * an IOVA through the host bridge otherwise.
 */
@Export
@Version("1.2.0")
package dev.dmaplane.p2pdma;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
