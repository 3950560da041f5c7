package dev.dmaplane.fs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.impl.FileMapper;
import dev.dmaplane.fs.impl.FileStore;
import dev.dmaplane.fs.impl.InodePages;
import dev.dmaplane.mem.HostMemory;

import java.lang.foreign.MemorySegment;
import java.util.Collection;
import java.util.List;
import java.util.OptionalLong;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.LongConsumer;

import static dev.dmaplane.mem.HostMemory.PAGE_SHIFT;
import static dev.dmaplane.mem.HostMemory.PAGE_SIZE;

/**
 * A file of a {@link MemFs} ({@code struct inode} with its {@code struct address_space}): a size, data in a page
 * cache over a disk or, on a DAX mount, in host frames directly, and the set of mappings ({@code i_mmap}) that
 * truncate must invalidate. Thread-safe, with the kernel's lock order: {@code i_rwsem} (size changes and writes),
 * then the {@code invalidate_lock} (held shared by faults, exclusively while pages are removed), then
 * {@code i_mmap_rwsem}, then the address spaces' page-table locks.
 * <p>
 * dmaplane has no file descriptors: an unlinked inode lives on while some VMA maps it, and is evicted (its pages
 * and blocks freed) when it is neither linked nor mapped; calls on an evicted inode fail with {@code ENOENT}.
 * <p>
 * Size: about 630 lines, over the project's 600, because read, write, truncate, hole punching, faults and pins each
 * take {@code i_rwsem}, the invalidate lock and the size together in one call; cut apart, the pieces would have to
 * hand each other the locks. The kernel spreads these paths over {@code mm/filemap.c} and {@code mm/truncate.c} but
 * over one {@code struct address_space}. The {@code i_mmap} set with its lock is {@link Immap}'s, the seals and
 * their checks {@link MemfdSeals}', the data the {@link FileStore}'s, the namespace {@link MemFs}'s.
 */
public final class Inode {
    /** The largest file size ({@code s_maxbytes}); larger sizes fail with {@code EFBIG}. */
    public static final long MAX_FILE_SIZE = 1L << 52;
    private static final long PAGE_MASK = PAGE_SIZE - 1;
    private static final long ALL = Long.MAX_VALUE;

    /** {@code F_SEAL_SEAL}: no further seal may be added. */
    public static final int F_SEAL_SEAL = 0x0001;
    /** {@code F_SEAL_SHRINK}: the file may not shrink. */
    public static final int F_SEAL_SHRINK = 0x0002;
    /** {@code F_SEAL_GROW}: the file may not grow. */
    public static final int F_SEAL_GROW = 0x0004;
    /** {@code F_SEAL_WRITE}: the contents may not be written (nor holes punched). */
    public static final int F_SEAL_WRITE = 0x0008;
    /**
     * {@code F_SEAL_FUTURE_WRITE}: no new write may start ({@code write}, a new writable shared mapping); shared
     * mappings that were writable before keep writing.
     */
    public static final int F_SEAL_FUTURE_WRITE = 0x0010;

    static {
        InodePages.install(new InodePages.Ops() {
            @Override
            public void fault(Inode inode, long index, boolean write, LongConsumer install) {
                inode.fault(index, write, install);
            }

            @Override
            public void checkPagesInside(Inode inode, long firstIndex, long endIndex) {
                inode.checkPagesInside(firstIndex, endIndex);
            }

            @Override
            public void setPageDirty(Inode inode, long index, long pfn) {
                inode.setPageDirty(index, pfn);
            }

            @Override
            public void addMapper(Inode inode, FileMapper mapper) {
                inode.replaceMappers(List.of(), List.of(mapper), true);
            }

            @Override
            public void removeMapper(Inode inode, FileMapper mapper) {
                inode.replaceMappers(List.of(mapper), List.of(), false);
            }

            @Override
            public void replaceMappers(Inode inode, Collection<? extends FileMapper> remove,
                                       Collection<? extends FileMapper> add) {
                inode.replaceMappers(remove, add, false);
            }
        });
    }

    private final MemFs fs;
    private final long ino;
    private final String path;
    private final FileStore store;
    private final ReentrantReadWriteLock iRwsem = new ReentrantReadWriteLock();
    private final ReentrantReadWriteLock invalidateLock = new ReentrantReadWriteLock();
    /** {@code i_mmap} with {@code i_mmap_rwsem}, and whether the file still has a name. */
    private final Immap immap;
    private volatile long size;
    private volatile boolean evicted;
    /** {@code info->seals}; added under {@link #iRwsem} held exclusively. */
    private final MemfdSeals seals;

    Inode(MemFs fs, long ino, String path, FileStore store) {
        this.fs = fs;
        this.ino = ino;
        this.path = path;
        this.store = store;
        this.immap = new Immap("inode " + ino + " (" + path + ")");
        this.seals = new MemfdSeals(path);
    }

    /** The inode number. */
    public long ino() {
        return ino;
    }

    /** The path the file was created under. */
    public String path() {
        return path;
    }

    /** The file system holding this inode. */
    public MemFs fs() {
        return fs;
    }

    /** Whether file data is host memory mapped directly ({@code IS_DAX}). */
    public boolean isDax() {
        return fs.isDax();
    }

    /** {@code i_size}. */
    public long size() {
        return size;
    }

    /**
     * The seals set on the file ({@code fcntl(F_GET_SEALS)}); files of a page-cache mount are memfd-like
     * (created with {@code MFD_ALLOW_SEALING}) and start with none.
     *
     * @throws ErrnoException {@code EINVAL} on a DAX file: only shmem-like files support seals, as
     *                        {@code memfd_fcntl} refuses other files
     */
    public int seals() {
        checkSealable();
        return seals.get();
    }

    /**
     * Adds seals ({@code fcntl(F_ADD_SEALS)}, {@code memfd_add_seals}): from then on {@link #truncate} refuses to
     * shrink ({@code F_SEAL_SHRINK}) or grow ({@code F_SEAL_GROW}) the file, {@link #write} refuses to write
     * ({@code F_SEAL_WRITE}, {@code F_SEAL_FUTURE_WRITE}) or to grow it, {@link #punchHole} refuses under a write
     * seal, all with {@code EPERM}; a new shared mapping that is writable is refused with {@code EPERM} under
     * either write seal, and one that is not can never be made writable. Seals are never removed.
     * {@code F_SEAL_WRITE} cannot be added while a shared mapping that is or may become writable exists
     * ({@code mapping_deny_writable}: {@code EBUSY}); {@code F_SEAL_FUTURE_WRITE} can, and such mappings keep
     * writing.
     *
     * @throws ErrnoException {@code EINVAL} for unknown seal bits or a DAX file, {@code EPERM} once
     *                        {@code F_SEAL_SEAL} is set, {@code EBUSY} for {@code F_SEAL_WRITE} while a writable
     *                        shared mapping exists, {@code ENOENT} for an evicted inode; nothing changes then
     */
    public void addSeals(int newSeals) {
        checkSealable();
        seals.checkKnown(newSeals);
        iRwsem.writeLock().lock();
        try {
            checkAlive();
            // no mapping comes or goes while the seals change (adding a mapping checks them)
            immap.whileStable(mappers -> seals.add(newSeals, mappers));
        } finally {
            iRwsem.writeLock().unlock();
        }
    }

    private void checkSealable() {
        ErrnoException.check(!isDax(), Errno.EINVAL, path + " is on a DAX mount: only shmem-like files take seals");
    }

    /** Whether the inode still has a name in its file system. */
    public boolean isLinked() {
        return immap.isLinked();
    }

    /** Whether the inode was evicted (unlinked and unmapped); every further call fails with {@code ENOENT}. */
    public boolean isEvicted() {
        return evicted;
    }

    /**
     * Reads up to {@code dst.byteSize()} bytes at {@code offset}, as {@code read(2)} does: never past the end of
     * the file.
     *
     * @return the bytes read, 0 at or past the end
     * @throws ErrnoException {@code EINVAL} for a negative offset, {@code ENOENT} for an evicted inode
     */
    public long read(long offset, MemorySegment dst) {
        ErrnoException.check(dst != null, Errno.EINVAL, "read of " + path + " needs a buffer, not null");
        return read(offset, dst.byteSize(), (page, at) -> {
            MemorySegment.copy(page, 0, dst, at, page.byteSize());
            return true;
        });
    }

    /**
     * Reads up to {@code length} bytes at {@code offset}, never past the end of the file, handing them to {@code to}
     * page piece by page piece straight from the page cache (or DAX blocks, or the zero page for a hole), as
     * {@code filemap_read} copies each folio to its {@code iov_iter}: what a device uses to DMA from the pages
     * directly. Readers of the file run at the same time; writes, truncation and cache eviction wait for them.
     *
     * @return the bytes handed over: up to the end of the file, or fewer when {@code to} stopped; 0 at or past the end
     * @throws ErrnoException {@code EINVAL} for a negative offset or length or a null {@code to}, {@code ENOENT}
     *                        for an evicted inode
     */
    public long read(long offset, long length, PageCopy to) {
        // plain tests, not ErrnoException.check: that would build its message on every call of this data path
        if (offset < 0) {
            throw new ErrnoException(Errno.EINVAL, "read offset must be >= 0, not " + offset);
        }
        if (length < 0) {
            throw new ErrnoException(Errno.EINVAL, "read length must be >= 0, not " + length);
        }
        if (to == null) {
            throw new ErrnoException(Errno.EINVAL, "read of " + path + " needs a PageCopy, not null");
        }
        iRwsem.readLock().lock();
        try {
            checkAlive();
            long n = Math.min(length, size - offset);
            if (n <= 0) {
                return 0;
            }
            return store.read(offset, n, to);
        } finally {
            iRwsem.readLock().unlock();
        }
    }

    /**
     * Writes {@code src} at {@code offset}, extending the file as needed ({@code generic_perform_write}).
     *
     * @return bytes written: all of them, or fewer when host memory ran out part way (a short write)
     * @throws ErrnoException {@code EINVAL} for a negative offset, {@code EFBIG} past {@link #MAX_FILE_SIZE},
     *                        {@code ENOMEM} when not one byte could be stored, {@code ENOENT} for an evicted inode
     */
    public long write(long offset, MemorySegment src) {
        ErrnoException.check(src != null, Errno.EINVAL, "write to " + path + " needs a buffer, not null");
        return write(offset, src.byteSize(), (page, at) -> {
            MemorySegment.copy(src, at, page, 0, page.byteSize());
            return true;
        });
    }

    /**
     * Writes {@code length} bytes at {@code offset}, extending the file as needed, which {@code from} puts straight
     * into each page piece in turn ({@code generic_perform_write} copying from its {@code iov_iter}): what a device
     * uses to DMA into the pages directly.
     *
     * @return bytes written: all of them, or fewer when host memory ran out part way (a short write) or {@code from}
     * stopped
     * @throws ErrnoException {@code EINVAL} for a negative offset or length or a null {@code from}, {@code EFBIG}
     *                        past {@link #MAX_FILE_SIZE}, {@code EPERM} when sealed, {@code ENOMEM} when not one byte
     *                        could be stored, {@code ENOENT} for an evicted inode
     */
    public long write(long offset, long length, PageCopy from) {
        long len = length;
        if (offset < 0) { // plain tests, not ErrnoException.check: no message built on the data path
            throw new ErrnoException(Errno.EINVAL, "write offset must be >= 0, not " + offset);
        }
        if (len < 0) {
            throw new ErrnoException(Errno.EINVAL, "write length must be >= 0, not " + len);
        }
        if (from == null) {
            throw new ErrnoException(Errno.EINVAL, "write to " + path + " needs a PageCopy, not null");
        }
        if (offset > MAX_FILE_SIZE - len) {
            throw new ErrnoException(Errno.EFBIG, "write of " + len + " bytes at " + offset
                    + " passes the maximum file size " + MAX_FILE_SIZE);
        }
        iRwsem.writeLock().lock();
        try {
            checkAlive();
            seals.checkWrite(offset, len, size);
            if (len == 0) {
                return 0;
            }
            if (offset + len > size) {
                zeroPastEof();
            }
            long done = store.write(offset, len, from);
            if (offset + done > size) {
                size = offset + done;
            }
            return done;
        } finally {
            iRwsem.writeLock().unlock();
        }
    }

    /**
     * Sets the size ({@code truncate(2)}). Growing leaves a hole that reads as zeroes. Shrinking follows
     * {@code truncate_pagecache}: every mapping of the pages past the new end is invalidated first (interval
     * notifiers with reason CLEAR, page-table entries zapped, private COW copies included), then the pages leave
     * the cache and their disk blocks are freed; the tail of a partial last page is zeroed. A page that is still
     * pinned is only dropped by the cache: its frame and its bytes live until the last unpin.
     * <p>
     * On a DAX file the blocks are the memory, so they cannot outlive the file: as the file system waits in
     * {@code dax_layout_busy_page} until DMA to the blocks ends, dmaplane refuses with {@code EBUSY} when a block
     * to free is still referenced (pinned). The size is then unchanged; if the pin was found only after the
     * mappings were invalidated, those mappings are simply faulted in again on next use.
     *
     * @throws ErrnoException {@code EINVAL} for a negative size, {@code EFBIG} past {@link #MAX_FILE_SIZE},
     *                        {@code EBUSY} on DAX as described, {@code ENOENT} for an evicted inode
     */
    public void truncate(long newSize) {
        ErrnoException.check(newSize >= 0, Errno.EINVAL, "file size must be >= 0, not " + newSize);
        ErrnoException.check(newSize <= MAX_FILE_SIZE, Errno.EFBIG,
                "file size " + newSize + " passes the maximum " + MAX_FILE_SIZE);
        iRwsem.writeLock().lock();
        try {
            checkAlive();
            long oldSize = size;
            seals.checkResize(oldSize, newSize);
            if (newSize >= oldSize) {
                zeroPastEof();
                size = newSize;
                return;
            }
            long firstGone = pagesFor(newSize);
            invalidateLock.writeLock().lock();
            try {
                refuseBusyDax(firstGone, ALL, "truncate to " + newSize);
                immap.unmap(firstGone, ALL, true);
                refuseBusyDax(firstGone, ALL, "truncate to " + newSize);
                size = newSize;
                store.removePages(firstGone, ALL);
                if ((newSize & PAGE_MASK) != 0) {
                    store.zeroRange(newSize, pageEnd(newSize));
                }
            } finally {
                invalidateLock.writeLock().unlock();
            }
            fs.traceInvalidate(newSize, oldSize - newSize, "truncate " + path + " to " + newSize);
        } finally {
            iRwsem.writeLock().unlock();
        }
    }

    /**
     * Deallocates {@code [offset, offset + length)} keeping the size ({@code fallocate(PUNCH_HOLE|KEEP_SIZE)}):
     * whole pages inside the hole are unmapped (reason CLEAR) and removed as {@code truncate_pagecache_range}
     * does, but private COW copies stay; partial pages at either edge are zeroed in place. Beyond the end of the
     * file nothing happens. DAX refuses with {@code EBUSY} as {@link #truncate} does.
     *
     * @throws ErrnoException {@code EINVAL} for a negative offset or a length below 1, {@code ENOENT} for an
     *                        evicted inode
     */
    public void punchHole(long offset, long length) {
        ErrnoException.check(offset >= 0, Errno.EINVAL, "hole offset must be >= 0, not " + offset);
        ErrnoException.check(length > 0, Errno.EINVAL, "hole length must be > 0, not " + length);
        iRwsem.writeLock().lock();
        try {
            checkAlive();
            seals.checkPunchHole();
            long end = Math.min(size, offset > MAX_FILE_SIZE - length ? MAX_FILE_SIZE : offset + length);
            if (offset >= end) {
                return;
            }
            long firstWhole = pagesFor(offset);
            long endWhole = end == size ? pagesFor(end) : end >>> PAGE_SHIFT;
            invalidateLock.writeLock().lock();
            try {
                if (firstWhole < endWhole) {
                    String what = "hole punch at " + offset + "+" + length;
                    refuseBusyDax(firstWhole, endWhole, what);
                    immap.unmap(firstWhole, endWhole, false);
                    refuseBusyDax(firstWhole, endWhole, what);
                    store.removePages(firstWhole, endWhole);
                }
                long headEnd = offset;
                if ((offset & PAGE_MASK) != 0) {
                    headEnd = Math.min(end, pageEnd(offset));
                    store.zeroRange(offset, headEnd);
                }
                long tailStart = Math.max(headEnd, endWhole << PAGE_SHIFT);
                if (tailStart < end) {
                    store.zeroRange(tailStart, end);
                }
            } finally {
                invalidateLock.writeLock().unlock();
            }
            fs.traceInvalidate(offset, end - offset, "punch hole " + path);
        } finally {
            iRwsem.writeLock().unlock();
        }
    }

    /**
     * Writes dirty cached pages back to the disk ({@code filemap_write_and_wait}); a no-op on DAX, whose stores
     * reach the medium directly.
     *
     * @return pages written
     */
    public long writeback() {
        iRwsem.readLock().lock();
        try {
            checkAlive();
            return store.writeback();
        } finally {
            iRwsem.readLock().unlock();
        }
    }

    /** {@code fsync(2)}: {@link #writeback()}; the simulated disk has no volatile cache to flush. */
    public void fsync() {
        writeback();
    }

    /**
     * Evicts this file's clean cached pages that are neither mapped nor pinned, as {@code echo 1 >
     * /proc/sys/vm/drop_caches} does; they are read back from the disk on next use.
     *
     * @return pages dropped
     */
    public long dropCache() {
        // exclusive: a read copies from cached frames without the page-cache lock, so none may be freed under it
        iRwsem.writeLock().lock();
        try {
            checkAlive();
            return store.dropClean();
        } finally {
            iRwsem.writeLock().unlock();
        }
    }

    /** Pages in the page cache (always 0 on DAX). */
    public long cachedPages() {
        return store.cachedPages();
    }

    /** Cached pages not yet written back. */
    public long dirtyPages() {
        return store.dirtyPages();
    }

    /** Pages the backing storage holds: disk blocks, or DAX blocks (host frames). */
    public long storedPages() {
        return store.storedPages();
    }

    /** The host frame now holding page {@code index} (cached page or DAX block), if any; allocates nothing. */
    public OptionalLong frameOf(long index) {
        long pfn = store.frameOf(index);
        return pfn < 0 ? OptionalLong.empty() : OptionalLong.of(pfn);
    }

    /**
     * Pins {@code count} pages from page {@code firstIndex} for a device, as {@code memfd_pin_folios}
     * ({@code mm/gup.c}) does for udmabuf: each page is found or read in (its block allocated on DAX) as a fault
     * would, and its frame pinned ({@code FOLL_PIN}) under the invalidate lock, so truncate cannot remove it between
     * lookup and pin; a pinned frame outlives truncate and eviction until {@link #unpinPagesDirty}.
     *
     * @return the frames, in page order
     * @throws ErrnoException {@code EINVAL} for a negative index or a count below 1, {@code EFAULT} for a page at or
     *                        past the end of the file, {@code ENOMEM}, {@code ENOENT} for an evicted inode; nothing
     *                        stays pinned then
     */
    public long[] pinPages(long firstIndex, int count) {
        ErrnoException.check(firstIndex >= 0, Errno.EINVAL, "first page index must be >= 0, not " + firstIndex);
        ErrnoException.check(count > 0, Errno.EINVAL, "page count must be > 0, not " + count);
        HostMemory mem = fs.memory();
        long[] pfns = new long[count];
        int pinned = 0;
        try {
            for (; pinned < count; pinned++) {
                int i = pinned;
                fault(firstIndex + i, false, pfn -> {
                    mem.pinPage(pfn);
                    mem.putPage(pfn);
                    pfns[i] = pfn;
                });
            }
        } catch (RuntimeException e) {
            for (int i = 0; i < pinned; i++) {
                mem.unpinPage(pfns[i]);
            }
            throw e;
        }
        return pfns;
    }

    /**
     * Drops pins {@link #pinPages} took on the pages from {@code firstIndex}, marking each page the frame still
     * caches dirty first, as {@code unpin_user_pages_dirty_lock} with {@code make_dirty} does after a device wrote.
     */
    public void unpinPagesDirty(long firstIndex, long[] pfns) {
        HostMemory mem = fs.memory();
        for (int i = 0; i < pfns.length; i++) {
            store.setDirty(firstIndex + i, pfns[i]);
            mem.unpinPage(pfns[i]);
        }
    }

    // address_space operations for the mm layer, reached through InodePages

    /**
     * Resolves a page fault on page {@code index} ({@code filemap_fault} / {@code dax_iomap_fault}): finds or
     * reads in the page (allocates the block on DAX), takes one reference on its frame and hands it to
     * {@code install}, which must either keep the reference in a page-table entry or drop it. {@code install} runs
     * with the invalidate lock held shared, so truncate cannot remove the page before it is mapped.
     *
     * @param write a write fault through a shared mapping: the page becomes dirty
     * @throws ErrnoException {@code EFAULT} for a page at or past the end of the file (the kernel's
     *                        {@code SIGBUS}, which GUP reports as {@code EFAULT}), {@code ENOMEM}, {@code ENOENT}
     *                        for an evicted inode
     */
    private void fault(long index, boolean write, LongConsumer install) {
        invalidateLock.readLock().lock();
        try {
            checkAlive();
            checkInside(index);
            long pfn = store.fault(index, write);
            install.accept(pfn);
        } finally {
            invalidateLock.readLock().unlock();
        }
    }

    /**
     * Throws {@code EFAULT} (SIGBUS) unless every page in {@code [firstIndex, endIndex)} lies before the end of
     * the file; lets the mm layer refuse an access before it changes anything.
     */
    private void checkPagesInside(long firstIndex, long endIndex) {
        checkAlive();
        if (endIndex > firstIndex) {
            checkInside(endIndex - 1);
        }
    }

    /** Marks page {@code index} dirty if frame {@code pfn} still caches it ({@code set_page_dirty_lock}). */
    private void setPageDirty(long index, long pfn) {
        store.setDirty(index, pfn);
    }

    /**
     * Atomically replaces mappings in {@code i_mmap}, as adding ({@code vma_link_file}), removing, splitting or
     * trimming a VMA does under {@code i_mmap_rwsem}; truncate never sees the file half unmapped. An unlinked inode
     * left with no mapping is evicted. Adding fails with {@code ENOENT} for an evicted inode, and a {@code fresh}
     * mapping that may write fails with {@code EPERM} while a write seal is set ({@code mapping_map_writable}: the
     * seal came after the mapping's own check).
     */
    private void replaceMappers(Collection<? extends FileMapper> remove, Collection<? extends FileMapper> add,
                                boolean fresh) {
        if (immap.replace(remove, add, fresh ? seals::checkNewMappings : mappings -> { })) {
            evict();
        }
    }

    /** How many VMAs map this file. */
    public int mapperCount() {
        return immap.count();
    }

    // life cycle, driven by MemFs

    /** The name went away ({@code drop_nlink}); evicts at once when nothing maps the inode. */
    void unlinked() {
        if (immap.unlink()) {
            evict();
        }
    }

    /** {@code evict} + {@code truncate_inode_pages_final}: frees every page and block (pinned frames live on). */
    private void evict() {
        iRwsem.writeLock().lock();
        try {
            invalidateLock.writeLock().lock();
            try {
                store.removePages(0, ALL);
                evicted = true;
            } finally {
                invalidateLock.writeLock().unlock();
            }
        } finally {
            iRwsem.writeLock().unlock();
        }
        fs.forget(this);
    }

    private void refuseBusyDax(long firstIndex, long endIndex, String what) {
        if (!isDax()) {
            return;
        }
        long busy = store.firstBusyPage(firstIndex, endIndex);
        if (busy >= 0) {
            throw new ErrnoException(Errno.EBUSY, what + " of DAX file " + path + ": block at page " + busy
                    + " is still in use (DMA-pinned); fsdax cannot free it until it is unpinned");
        }
    }

    /** Zeroes the bytes between the end of the file and the end of its last page before the size grows. */
    private void zeroPastEof() {
        long s = size;
        if ((s & PAGE_MASK) != 0) {
            store.zeroRange(s, pageEnd(s));
        }
    }

    private void checkInside(long index) {
        if (index >= pagesFor(size)) {
            throw new ErrnoException(Errno.EFAULT, "SIGBUS: page " + index + " of " + path
                    + " lies past the end of the file (size " + size + ")");
        }
    }

    private void checkAlive() {
        if (evicted) {
            throw new ErrnoException(Errno.ENOENT, "inode " + ino + " (" + path + ") was unlinked and evicted");
        }
    }

    private static long pagesFor(long bytes) {
        return (bytes + PAGE_MASK) >>> PAGE_SHIFT;
    }

    private static long pageEnd(long pos) {
        return (pos | PAGE_MASK) + 1;
    }

    @Override
    public String toString() {
        return "inode " + ino + " " + path + " size=" + size + (isDax() ? " dax" : "");
    }
}
