package dev.dmaplane.fs.impl;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.PageCopy;
import dev.dmaplane.mem.HostMemory;

import java.lang.foreign.MemorySegment;
import java.util.Map;
import java.util.TreeMap;

import static dev.dmaplane.mem.HostMemory.PAGE_SHIFT;
import static dev.dmaplane.mem.HostMemory.PAGE_SIZE;

/**
 * File storage of a DAX file system ({@code Documentation/filesystems/dax.rst}): each file block is a host frame,
 * as persistent memory is, and reads, writes and mappings reach that frame directly with no page cache in
 * between. Blocks are allocated on first write or fault (a read fault of a hole allocates too, where the kernel
 * would map the shared zero page first). Thread-safe through the store's monitor.
 */
public final class DaxStore implements FileStore {
    private static final long PAGE_MASK = PAGE_SIZE - 1;

    private final HostMemory mem;
    /** Page index to frame number; the file system holds one reference on each. */
    private final TreeMap<Long, Long> blocks = new TreeMap<>();

    public DaxStore(HostMemory mem) {
        this.mem = mem;
    }

    private long block(long index) {
        Long pfn = blocks.get(index);
        if (pfn == null) {
            pfn = mem.allocPages(0);
            blocks.put(index, pfn);
        }
        return pfn;
    }

    @Override
    public synchronized long read(long pos, long len, PageCopy to) {
        long done = 0;
        while (done < len) {
            long at = pos + done;
            long off = at & PAGE_MASK;
            long n = Math.min(PAGE_SIZE - off, len - done);
            Long pfn = blocks.get(at >>> PAGE_SHIFT);
            MemorySegment page = pfn == null ? ZERO_PAGE : mem.frame(pfn);
            if (!to.copy(page.asSlice(off, n), done)) {
                return done;
            }
            done += n;
        }
        return done;
    }

    @Override
    public synchronized long write(long pos, long len, PageCopy from) {
        long done = 0;
        while (done < len) {
            long at = pos + done;
            long off = at & PAGE_MASK;
            long n = Math.min(PAGE_SIZE - off, len - done);
            long pfn;
            try {
                pfn = block(at >>> PAGE_SHIFT);
            } catch (ErrnoException e) {
                if (done > 0) {
                    return done;
                }
                throw e;
            }
            if (!from.copy(mem.frame(pfn).asSlice(off, n), done)) {
                return done;
            }
            done += n;
        }
        return done;
    }

    @Override
    public synchronized long fault(long index, boolean write) {
        long pfn = block(index);
        mem.getPage(pfn);
        return pfn;
    }

    @Override
    public void setDirty(long index, long pfn) {
        // stores reach the medium directly: there is no page cache to dirty
    }

    @Override
    public synchronized void zeroRange(long from, long to) {
        Long pfn = blocks.get(from >>> PAGE_SHIFT);
        if (pfn != null) {
            mem.frame(pfn).asSlice(from & PAGE_MASK, to - from).fill((byte) 0);
        }
    }

    @Override
    public synchronized void removePages(long firstIndex, long endIndex) {
        Map<Long, Long> gone = blocks.subMap(firstIndex, endIndex);
        for (long pfn : gone.values()) {
            mem.putPage(pfn);
        }
        gone.clear();
    }

    @Override
    public synchronized long firstBusyPage(long firstIndex, long endIndex) {
        for (Map.Entry<Long, Long> e : blocks.subMap(firstIndex, endIndex).entrySet()) {
            if (mem.pinCount(e.getValue()) > 0) {
                return e.getKey();
            }
        }
        return -1;
    }

    @Override
    public long writeback() {
        return 0;
    }

    @Override
    public long dropClean() {
        return 0;
    }

    @Override
    public long cachedPages() {
        return 0;
    }

    @Override
    public long dirtyPages() {
        return 0;
    }

    @Override
    public synchronized long storedPages() {
        return blocks.size();
    }

    @Override
    public synchronized long frameOf(long index) {
        Long pfn = blocks.get(index);
        return pfn == null ? -1 : pfn;
    }
}
