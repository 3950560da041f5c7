package dev.dmaplane.fs.impl;

import dev.dmaplane.fs.PageCopy;
import dev.dmaplane.mem.HostMemory;

import java.lang.foreign.MemorySegment;

/**
 * Where a file's bytes live: the page cache in front of a disk ({@link PageCacheStore}), or directly addressable
 * host memory for DAX ({@link DaxStore}). Callers hold the inode's locks that order these calls against size
 * changes; implementations guard their own index structures (the {@code i_pages} lock) themselves.
 */
public sealed interface FileStore permits PageCacheStore, DaxStore {
    /** The shared zero page ({@code ZERO_PAGE}): what a read of a hole copies from, read-only. */
    MemorySegment ZERO_PAGE = MemorySegment.ofArray(new byte[(int) HostMemory.PAGE_SIZE]).asReadOnly();

    /**
     * Hands {@code length} file bytes at {@code pos} to {@code to}, page piece by page piece ({@code filemap_read});
     * the caller has clamped the range to the file size.
     *
     * @return bytes handed over: all of them, or fewer when {@code to} stopped the read
     */
    long read(long pos, long length, PageCopy to);

    /**
     * Has {@code from} fill {@code length} file bytes at {@code pos}, page piece by page piece
     * ({@code generic_perform_write}), the pages found or created first.
     *
     * @return bytes stored: all of them, or fewer when memory ran out part way (a short write) or {@code from}
     * stopped the write
     * @throws dev.dmaplane.errno.ErrnoException {@code ENOMEM} when not even the first page could be stored
     */
    long write(long pos, long length, PageCopy from);

    /** Copies file bytes at {@code pos} into {@code dst}; the caller has clamped the range to the file size. */
    default void read(long pos, MemorySegment dst) {
        read(pos, dst.byteSize(), (page, at) -> {
            MemorySegment.copy(page, 0, dst, at, page.byteSize());
            return true;
        });
    }

    /**
     * Copies {@code src} into the file at {@code pos}.
     *
     * @return bytes stored: all of them, or fewer when memory ran out part way (a short write)
     * @throws dev.dmaplane.errno.ErrnoException {@code ENOMEM} when not even the first page could be stored
     */
    default long write(long pos, MemorySegment src) {
        return write(pos, src.byteSize(), (page, at) -> {
            MemorySegment.copy(src, at, page, 0, page.byteSize());
            return true;
        });
    }

    /**
     * Finds or creates the frame holding page {@code index} and takes one reference on it for the caller's
     * page-table entry ({@code filemap_fault} / {@code dax_iomap_fault}).
     *
     * @param write the fault is a write through a shared mapping: the page becomes dirty
     * @return the frame number
     */
    long fault(long index, boolean write);

    /** Marks page {@code index} dirty if frame {@code pfn} still caches it ({@code set_page_dirty}). */
    void setDirty(long index, long pfn);

    /** Zeroes file bytes {@code [from, to)}, which lie inside one page, wherever the page is stored. */
    void zeroRange(long from, long to);

    /**
     * Removes pages {@code [firstIndex, endIndex)}: drops the store's reference on their frames (a pinned frame
     * lives on until its last pin goes) and forgets their disk blocks.
     */
    void removePages(long firstIndex, long endIndex);

    /**
     * The first page in {@code [firstIndex, endIndex)} whose frame is DMA-pinned and so may not be freed, or -1:
     * what {@code dax_layout_busy_page_range} looks for before DAX blocks are freed. Always -1 for the page cache,
     * whose pinned pages simply outlive their removal from the cache.
     */
    long firstBusyPage(long firstIndex, long endIndex);

    /** Writes dirty pages back to the disk ({@code writepages}); returns how many were written. */
    long writeback();

    /** Evicts clean pages that nobody maps or pins ({@code drop_caches}); returns how many were dropped. */
    long dropClean();

    /** Pages currently in the page cache. */
    long cachedPages();

    /** Cached pages not yet written back. */
    long dirtyPages();

    /** Pages held by the backing storage (disk blocks, or DAX blocks). */
    long storedPages();

    /** The frame now holding page {@code index} (cached page or DAX block), or -1; creates nothing. */
    long frameOf(long index);
}
