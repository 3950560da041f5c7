/**
 * Exporters built on the dma-buf core: the system heap ({@code drivers/dma-buf/heaps/system_heap.c}), udmabuf over
 * sealed memfd-like files ({@code drivers/dma-buf/udmabuf.c}), and a GPU driver's peer-to-peer exporter
 * ({@link dev.dmaplane.dmabuf.heap.P2pExporter} over a driver's {@link dev.dmaplane.dmabuf.heap.ExportBacking}):
 * buffers in a GPU's memory BAR are mapped peer-to-peer for importers p2pdma lets reach it and migrate to host memory
 * for the others. {@link dev.dmaplane.dmabuf.heap.VramExporter} is its simplest user, with VRAM from a genalloc pool.
 */
@Export
@Version("1.1.0")
package dev.dmaplane.dmabuf.heap;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
