/**
 * A general-purpose allocator of special memory ({@code lib/genalloc.c}, {@code include/linux/genalloc.h}): device
 * memory that the page allocator does not manage (a BAR's p2pmem, VRAM beyond a BAR), handed out in whole
 * pages, first fit.
 */
@Export
@Version("1.0.0")
package dev.dmaplane.genalloc;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
