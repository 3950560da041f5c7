package dev.dmaplane.fs.impl;

/**
 * One mapping of an inode's pages into an address space: an entry of the inode's {@code i_mmap} tree, which
 * {@code unmap_mapping_range} walks when pages of the file go away. The mm layer implements it for each VMA that
 * maps a file; the file system calls it with its invalidate lock held for writing, so no fault can map the pages
 * again while they are being removed.
 */
public interface FileMapper {
    /**
     * Invalidates this mapping's view of file pages {@code [firstIndex, endIndex)}: tells interval notifiers
     * (reason CLEAR) and zaps the page-table entries, dropping their references.
     *
     * @param evenCows also zap private copy-on-write copies of those pages (truncate does, hole punch does not:
     *                 {@code truncate_pagecache} versus {@code truncate_pagecache_range} in {@code mm/truncate.c})
     */
    void unmapFilePages(long firstIndex, long endIndex, boolean evenCows);

    /**
     * Whether this is a shared mapping that is or may become writable ({@code VM_SHARED} with {@code VM_MAYWRITE},
     * {@code is_shared_maywrite}): what {@code i_mmap_writable} counts, and what makes adding {@code F_SEAL_WRITE}
     * fail with {@code EBUSY}.
     */
    default boolean sharedMayWrite() {
        return false;
    }
}
