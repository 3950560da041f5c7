/** The DMA API: streaming and coherent mappings, scatter-gather tables, sync, and device-side memory access. */
@Export
@Version("1.3.0")
package dev.dmaplane.dma;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
