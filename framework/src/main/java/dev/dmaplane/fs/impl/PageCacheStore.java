package dev.dmaplane.fs.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.PageCopy;
import dev.dmaplane.mem.HostMemory;

import java.lang.foreign.MemorySegment;
import java.util.Iterator;
import java.util.Map;
import java.util.concurrent.ConcurrentSkipListMap;

import static dev.dmaplane.mem.HostMemory.PAGE_SHIFT;
import static dev.dmaplane.mem.HostMemory.PAGE_SIZE;

/**
 * A file's page cache ({@code struct address_space} with its {@code i_pages}): page index to a host frame on which
 * the cache holds one reference, with a dirty bit, in front of a {@link Disk}. Pages are read in from the disk on
 * first use and written back by {@link #writeback()}; a read of a page that is neither cached nor on the disk (a hole)
 * reads the zero page and caches nothing, as shmem's {@code SGP_READ} does.
 * <p>Locking, as {@code filemap_read} does it: a read finds a cached page, or a hole, without a lock (the
 * {@code i_pages} lookup under RCU; here a concurrent skip list, and the disk's block index likewise), so readers of
 * any pages never wait for one another; only a miss that reads a page in from the disk takes the store's monitor
 * (the {@code i_pages} lock), which every change of the index holds. A frame a read copies from stays the page's frame
 * while the read runs because the inode excludes readers from everything that removes pages ({@link #removePages},
 * {@link #dropClean}) and from writes, holding its {@code i_rwsem} shared for reads and exclusively for those.
 */
public final class PageCacheStore implements FileStore {
    private static final long PAGE_MASK = PAGE_SIZE - 1;

    /** A cached page: its frame (the cache's reference) and whether it differs from the disk. */
    private static final class CachedPage {
        final long pfn;
        volatile boolean dirty;

        CachedPage(long pfn) {
            this.pfn = pfn;
        }
    }

    private final HostMemory mem;
    private final Disk disk = new Disk();
    private final ConcurrentSkipListMap<Long, CachedPage> pages = new ConcurrentSkipListMap<>();

    public PageCacheStore(HostMemory mem) {
        this.mem = mem;
    }

    /**
     * {@code filemap_get_folio(FGP_CREAT)} plus {@code read_folio}: the cached page, read in when missing. Called
     * with the store's monitor held.
     */
    private CachedPage getOrRead(long index) {
        CachedPage p = pages.get(index);
        if (p == null) {
            long pfn = mem.allocPages(0);
            disk.readInto(index, mem.frame(pfn));
            p = new CachedPage(pfn);
            pages.put(index, p);
        }
        return p;
    }

    @Override
    public long read(long pos, long len, PageCopy to) {
        long done = 0;
        while (done < len) {
            long at = pos + done;
            long index = at >>> PAGE_SHIFT;
            long off = at & PAGE_MASK;
            long n = Math.min(PAGE_SIZE - off, len - done);
            MemorySegment page = pageForRead(index);
            if (!to.copy(n == page.byteSize() ? page : page.asSlice(off, n), done)) { // a whole page: no view made
                return done;
            }
            done += n;
        }
        return done;
    }

    /**
     * The bytes of page {@code index} for a read: its cached frame, the zero page for a hole (nothing allocated, as
     * {@code shmem_get_folio_gfp} with {@code SGP_READ}), or the disk block itself when no memory is left to cache
     * it (read around the cache, as direct I/O would).
     */
    private MemorySegment pageForRead(long index) {
        CachedPage p = pages.get(index);
        if (p != null) {
            return mem.frame(p.pfn);
        }
        if (!disk.holds(index)) {
            return ZERO_PAGE;
        }
        synchronized (this) {
            try {
                return mem.frame(getOrRead(index).pfn);
            } catch (ErrnoException e) {
                if (e.errno() != Errno.ENOMEM) {
                    throw e;
                }
                MemorySegment block = disk.block(index);
                return block == null ? ZERO_PAGE : block;
            }
        }
    }

    @Override
    public long write(long pos, long len, PageCopy from) {
        long done = 0;
        while (done < len) {
            long at = pos + done;
            long off = at & PAGE_MASK;
            long n = Math.min(PAGE_SIZE - off, len - done);
            CachedPage p;
            try {
                synchronized (this) {
                    p = getOrRead(at >>> PAGE_SHIFT);
                }
            } catch (ErrnoException e) {
                if (e.errno() == Errno.ENOMEM && done > 0) {
                    return done;
                }
                throw e;
            }
            if (!from.copy(mem.frame(p.pfn).asSlice(off, n), done)) {
                return done; // write_end with nothing copied: the page is not dirtied
            }
            p.dirty = true;
            done += n;
        }
        return done;
    }

    @Override
    public synchronized long fault(long index, boolean write) {
        CachedPage p = getOrRead(index);
        mem.getPage(p.pfn);
        if (write) {
            p.dirty = true;
        }
        return p.pfn;
    }

    @Override
    public synchronized void setDirty(long index, long pfn) {
        CachedPage p = pages.get(index);
        if (p != null && p.pfn == pfn) {
            p.dirty = true;
        }
    }

    @Override
    public synchronized void zeroRange(long from, long to) {
        long index = from >>> PAGE_SHIFT;
        int off = (int) (from & PAGE_MASK);
        int end = (int) (off + (to - from));
        CachedPage p = pages.get(index);
        if (p != null) {
            mem.frame(p.pfn).asSlice(off, end - off).fill((byte) 0);
        }
        disk.zero(index, off, end);
    }

    @Override
    public synchronized void removePages(long firstIndex, long endIndex) {
        Map<Long, CachedPage> gone = pages.subMap(firstIndex, endIndex);
        for (CachedPage p : gone.values()) {
            mem.putPage(p.pfn);
        }
        gone.clear();
        disk.remove(firstIndex, endIndex);
    }

    @Override
    public long firstBusyPage(long firstIndex, long endIndex) {
        // page-cache pages never hold truncate up: the cache lets go and a pinned frame outlives it
        return -1;
    }

    @Override
    public synchronized long writeback() {
        long written = 0;
        for (Map.Entry<Long, CachedPage> e : pages.entrySet()) {
            CachedPage p = e.getValue();
            if (p.dirty) {
                // clear_page_dirty_for_io before the copy: a write racing with us dirties the page again
                p.dirty = false;
                disk.write(e.getKey(), mem.frame(p.pfn));
                written++;
            }
        }
        return written;
    }

    @Override
    public synchronized long dropClean() {
        long dropped = 0;
        for (Iterator<CachedPage> it = pages.values().iterator(); it.hasNext(); ) {
            CachedPage p = it.next();
            // mapping_evict_folio: only the cache's own reference may remain (no mapping, no pin, not dirty)
            if (!p.dirty && mem.refCount(p.pfn) == 1 && mem.pinCount(p.pfn) == 0) {
                it.remove();
                mem.putPage(p.pfn);
                dropped++;
            }
        }
        return dropped;
    }

    @Override
    public synchronized long cachedPages() {
        return pages.size();
    }

    @Override
    public synchronized long dirtyPages() {
        return pages.values().stream().filter(p -> p.dirty).count();
    }

    @Override
    public synchronized long storedPages() {
        return disk.blocks();
    }

    @Override
    public synchronized long frameOf(long index) {
        CachedPage p = pages.get(index);
        return p == null ? -1 : p.pfn;
    }
}
