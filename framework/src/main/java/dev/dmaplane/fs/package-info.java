/**
 * An in-memory file system with a page cache over a simulated disk, or in DAX mode with file storage that is host
 * memory mapped directly (fsdax); inodes know every VMA that maps them, so truncate and hole punch can invalidate
 * mappings before pages go.
 */
@Export
@Version("2.0.0")
package dev.dmaplane.fs;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
