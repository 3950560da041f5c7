/**
 * Cross-device synchronisation as {@code drivers/dma-buf} models it: fences ({@code struct dma_fence}) on driver
 * timelines, reservation objects ({@code struct dma_resv}) that hold a buffer's fences by usage, and the
 * wound/wait mutexes ({@code struct ww_mutex}) that let a driver lock many reservations without deadlock.
 */
@Export
@Version("1.1.0")
package dev.dmaplane.fence;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
