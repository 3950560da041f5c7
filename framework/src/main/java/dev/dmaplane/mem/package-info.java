/** Host physical memory: page frames with reference and pin counts, backed lazily by MemorySegments. */
@Export
@Version("1.4.0")
package dev.dmaplane.mem;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
