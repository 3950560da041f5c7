/**
 * The machine as a picture: {@link dev.dmaplane.runtime.topo.Topology} is a snapshot of the PCI tree (host bridges,
 * root ports, switches, endpoints), its IOMMU groups, the ACS controls of its ports, the bound drivers, the
 * peer-to-peer paths between bus-mastering functions as {@code drivers/pci/p2pdma.c} judges them, and the dma-bufs
 * with their exporter and importers; {@link dev.dmaplane.runtime.topo.TopologyDot} renders it as Graphviz DOT and
 * {@link dev.dmaplane.runtime.topo.Graphviz} runs the real {@code dot} on it. What {@code lspci -tv},
 * {@code /sys/kernel/iommu_groups} and {@code /sys/kernel/debug/dma_buf/bufinfo} tell in text, drawn.
 */
@Export
@Version("1.0.0")
package dev.dmaplane.runtime.topo;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
