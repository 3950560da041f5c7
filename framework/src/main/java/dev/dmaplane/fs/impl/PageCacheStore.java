package dev.dmaplane.fs.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;

import java.lang.foreign.MemorySegment;
import java.util.Iterator;
import java.util.Map;
import java.util.TreeMap;

import static dev.dmaplane.mem.HostMemory.PAGE_SHIFT;
import static dev.dmaplane.mem.HostMemory.PAGE_SIZE;

/**
 * A file's page cache ({@code struct address_space} with its {@code i_pages}): page index to a host frame on which
 * the cache holds one reference, with a dirty bit, in front of a {@link Disk}. Pages are read in from the disk on
 * first use and written back by {@link #writeback()}; a read of a page that is neither cached nor on the disk (a hole)
 * reads zeroes and caches nothing, as shmem's {@code SGP_READ} does. Thread-safe: every method holds the store's monitor, the
 * counterpart of the {@code i_pages} lock.
 */
public final class PageCacheStore implements FileStore {
    private static final long PAGE_MASK = PAGE_SIZE - 1;

    /** A cached page: its frame (the cache's reference) and whether it differs from the disk. */
    private static final class CachedPage {
        final long pfn;
        boolean dirty;

        CachedPage(long pfn) {
            this.pfn = pfn;
        }
    }

    private final HostMemory mem;
    private final Disk disk = new Disk();
    private final TreeMap<Long, CachedPage> pages = new TreeMap<>();

    public PageCacheStore(HostMemory mem) {
        this.mem = mem;
    }

    /** {@code filemap_get_folio(FGP_CREAT)} plus {@code read_folio}: the cached page, read in when missing. */
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
    public synchronized void read(long pos, MemorySegment dst) {
        long len = dst.byteSize();
        long done = 0;
        while (done < len) {
            long at = pos + done;
            long index = at >>> PAGE_SHIFT;
            long off = at & PAGE_MASK;
            long n = Math.min(PAGE_SIZE - off, len - done);
            if (!pages.containsKey(index) && !disk.holds(index)) {
                // a hole reads as the zero page, nothing allocated (shmem_get_folio_gfp with SGP_READ)
                dst.asSlice(done, n).fill((byte) 0);
                done += n;
                continue;
            }
            CachedPage p;
            try {
                p = getOrRead(index);
            } catch (ErrnoException e) {
                if (e.errno() != Errno.ENOMEM) {
                    throw e;
                }
                // no memory to cache the page: read around the cache, as direct I/O would
                disk.read(index, off, dst, done, n);
                done += n;
                continue;
            }
            MemorySegment.copy(mem.frame(p.pfn), off, dst, done, n);
            done += n;
        }
    }

    @Override
    public synchronized long write(long pos, MemorySegment src) {
        long len = src.byteSize();
        long done = 0;
        while (done < len) {
            long at = pos + done;
            long off = at & PAGE_MASK;
            long n = Math.min(PAGE_SIZE - off, len - done);
            CachedPage p;
            try {
                p = getOrRead(at >>> PAGE_SHIFT);
            } catch (ErrnoException e) {
                if (e.errno() == Errno.ENOMEM && done > 0) {
                    return done;
                }
                throw e;
            }
            MemorySegment.copy(src, done, mem.frame(p.pfn), off, n);
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
