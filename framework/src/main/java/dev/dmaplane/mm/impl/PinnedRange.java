package dev.dmaplane.mm.impl;

import dev.dmaplane.dma.SgTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.fs.impl.InodePages;
import dev.dmaplane.mm.PinFlags;
import dev.dmaplane.mm.PinnedPages;
import dev.dmaplane.trace.TraceKind;

import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;

import static dev.dmaplane.mem.HostMemory.PAGE_SHIFT;
import static dev.dmaplane.mem.HostMemory.PAGE_SIZE;

/**
 * The frames one {@code pin_user_pages} call pinned. Unpinning needs no lock of the address space, so it works
 * from an invalidation callback and after the address space has exited.
 */
final class PinnedRange implements PinnedPages {
    private final Mm mm;
    private final long addr;
    private final long length;
    private final long[] pfns;
    /** For page-cache pages: the file and page index, so {@link #unpinDirty} can dirty them; else null. */
    private final Inode[] owners;
    private final long[] indexes;
    private final Set<PinFlags> flags;
    private final AtomicBoolean pinned = new AtomicBoolean(true);

    PinnedRange(Mm mm, long addr, long length, long[] pfns, Inode[] owners, long[] indexes, Set<PinFlags> flags) {
        this.mm = mm;
        this.addr = addr;
        this.length = length;
        this.pfns = pfns;
        this.owners = owners;
        this.indexes = indexes;
        this.flags = Set.copyOf(flags);
    }

    @Override
    public long address() {
        return addr;
    }

    @Override
    public long[] physAddrs() {
        long[] out = new long[pfns.length];
        for (int i = 0; i < pfns.length; i++) {
            out[i] = pfns[i] << PAGE_SHIFT;
        }
        return out;
    }

    @Override
    public long offset() {
        return addr & (PAGE_SIZE - 1);
    }

    @Override
    public long length() {
        return length;
    }

    @Override
    public int pageCount() {
        return pfns.length;
    }

    @Override
    public Set<PinFlags> flags() {
        return flags;
    }

    @Override
    public boolean isPinned() {
        return pinned.get();
    }

    @Override
    public SgTable toSgTable() {
        if (!pinned.get()) {
            throw new ErrnoException(Errno.EINVAL, "pages of 0x" + Long.toHexString(addr) + "+" + length
                    + " are no longer pinned");
        }
        return SgTable.fromPages(physAddrs(), PAGE_SIZE, offset(), length);
    }

    @Override
    public void unpin() {
        claim("unpin_user_pages");
        release(false);
    }

    @Override
    public void unpinDirty() {
        claim("unpin_user_pages_dirty_lock");
        release(true);
    }

    @Override
    public void close() {
        if (pinned.compareAndSet(true, false)) {
            release(false);
        }
    }

    private void claim(String what) {
        if (!pinned.compareAndSet(true, false)) {
            throw new ErrnoException(Errno.EINVAL, what + " of 0x" + Long.toHexString(addr) + "+" + length + " in "
                    + mm.name + ": already unpinned");
        }
    }

    private void release(boolean dirty) {
        if (dirty && owners != null) {
            for (int i = 0; i < pfns.length; i++) {
                if (owners[i] != null) {
                    InodePages.setPageDirty(owners[i], indexes[i], pfns[i]);
                }
            }
        }
        for (long pfn : pfns) {
            mm.mem.unpinPage(pfn);
        }
        mm.pinned.addAndGet(-pfns.length);
        mm.tracer.emit(TraceKind.UNPIN, mm.name, addr, length, "pages=" + pfns.length + (dirty ? " dirty" : ""));
    }

    @Override
    public String toString() {
        return "pinned 0x" + Long.toHexString(addr) + "+" + length + " (" + pfns.length + " pages) of " + mm.name
                + (pinned.get() ? "" : ", unpinned");
    }
}
