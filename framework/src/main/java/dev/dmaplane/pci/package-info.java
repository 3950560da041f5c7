/**
 * The PCI topology: BDFs, config space with capabilities, BARs backed by MMIO handlers or lazily allocated
 * device memory, ACS, host bridges, buses and functions, IOMMU isolation groups, and the machine-file loader.
 */
@Export
@Version("1.7.0")
package dev.dmaplane.pci;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
