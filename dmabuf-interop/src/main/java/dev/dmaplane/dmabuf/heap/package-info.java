/**
 * Exporters built on the dma-buf core: the system heap ({@code drivers/dma-buf/heaps/system_heap.c}), udmabuf over
 * sealed memfd-like files ({@code drivers/dma-buf/udmabuf.c}), and a VRAM exporter whose buffers live in a GPU's
 * memory BAR, are mapped peer-to-peer for importers p2pdma lets reach it, and migrate to host memory for the others.
 */
@Export
@Version("1.0.0")
package dev.dmaplane.dmabuf.heap;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
