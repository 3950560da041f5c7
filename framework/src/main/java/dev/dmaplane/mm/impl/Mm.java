package dev.dmaplane.mm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.impl.InodePages;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.IntervalNotifier;
import dev.dmaplane.mm.IntervalSubscription;
import dev.dmaplane.mm.InvalidateReason;
import dev.dmaplane.mm.MmuRange;
import dev.dmaplane.mm.Vma;
import dev.dmaplane.trace.Tracer;

import java.util.List;
import java.util.Objects;
import java.util.OptionalLong;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;

import static dev.dmaplane.mem.HostMemory.PAGE_SHIFT;
import static dev.dmaplane.mem.HostMemory.PAGE_SIZE;

/**
 * The state of one address space ({@code struct mm_struct}) and the few operations every part of the mm needs:
 * zapping page-table entries under the notifiers and installing new ones. Locks, outermost first:
 * {@link #mmapLock} (held for writing by layout changes, for reading by faults and GUP), then file system locks,
 * then the notifier tree, then {@link #ptl}, which guards the page table.
 */
public final class Mm {
    /** The end of user space ({@code TASK_SIZE} on x86-64 with 4-level paging). */
    public static final long TASK_SIZE = 1L << 47;
    /** The lowest address {@code mmap} hands out or accepts ({@code vm.mmap_min_addr}). */
    public static final long MMAP_MIN_ADDR = 0x10000;
    /** Where top-down placement of new mappings starts ({@code mmap_base}). */
    public static final long MMAP_BASE = 0x7f00_0000_0000L;
    static final long PAGE_MASK = PAGE_SIZE - 1;

    final HostMemory mem;
    final Tracer tracer;
    final String name;
    final ReentrantReadWriteLock mmapLock = new ReentrantReadWriteLock();
    final ReentrantLock ptl = new ReentrantLock();
    /** Guarded by {@link #ptl}. */
    final PageTable pt = new PageTable();
    /** Guarded by {@link #mmapLock}. */
    final VmaTree vmas = new VmaTree();
    final NotifierTree notifiers;
    /** Pages pinned through this address space and not yet unpinned. */
    final AtomicLong pinned = new AtomicLong();
    volatile boolean exited;

    public Mm(HostMemory mem, Tracer tracer, String name) {
        this.mem = Objects.requireNonNull(mem, "mem");
        this.tracer = Objects.requireNonNull(tracer, "tracer");
        if (name == null || name.isBlank()) {
            throw new ErrnoException(Errno.EINVAL, "an address space needs a name, not '" + name + "'");
        }
        this.name = name;
        this.notifiers = new NotifierTree(tracer, name);
    }

    public String name() {
        return name;
    }

    public HostMemory memory() {
        return mem;
    }

    public boolean exited() {
        return exited;
    }

    /** Resident pages: present page-table entries ({@code RSS}). */
    public long residentPages() {
        ptl.lock();
        try {
            return pt.present();
        } finally {
            ptl.unlock();
        }
    }

    public long pinnedPages() {
        return pinned.get();
    }

    /** The VMAs in address order, as {@code /proc/pid/maps} lists them. */
    public List<Vma> vmas() {
        mmapLock.readLock().lock();
        try {
            return vmas.all().stream().map(Region::toVma).toList();
        } finally {
            mmapLock.readLock().unlock();
        }
    }

    /** The physical address backing {@code addr} if its page is present ({@code /proc/pid/pagemap}). */
    public OptionalLong physAddr(long addr) {
        if (addr < 0 || addr >= TASK_SIZE) {
            return OptionalLong.empty();
        }
        ptl.lock();
        try {
            long pte = pt.get(addr >>> PAGE_SHIFT);
            return pte == Pte.NONE ? OptionalLong.empty()
                    : OptionalLong.of((Pte.pfn(pte) << PAGE_SHIFT) | (addr & PAGE_MASK));
        } finally {
            ptl.unlock();
        }
    }

    /**
     * {@code mmu_interval_notifier_insert}.
     *
     * @throws ErrnoException {@code EOVERFLOW} for an empty or wrapping range (as the kernel answers),
     *                        {@code EFAULT} after exit
     */
    public IntervalSubscription registerNotifier(long start, long length, IntervalNotifier callback) {
        if (callback == null) {
            throw new ErrnoException(Errno.EINVAL, "interval notifier callback is null");
        }
        if (start < 0 || length <= 0 || start > Long.MAX_VALUE - length) {
            throw new ErrnoException(Errno.EOVERFLOW, "notifier range 0x" + Long.toHexString(start) + "+" + length
                    + " is empty or wraps");
        }
        mmapLock.readLock().lock();
        try {
            checkAlive();
            return notifiers.insert(start, start + length, callback);
        } finally {
            mmapLock.readLock().unlock();
        }
    }

    // shared by the mm operations

    void checkAlive() {
        if (exited) {
            throw new ErrnoException(Errno.EFAULT, "address space " + name + " has exited (exit_mmap ran)");
        }
    }

    /**
     * {@code zap_page_range} under {@code mmu_notifier_invalidate_range_start/end}: tells the notifiers, then
     * clears the entries in {@code [start, end)} and drops their references (special entries of a BAR hold
     * none). Pinned frames keep their pin's reference and so stay allocated.
     *
     * @param anonToo also zap anonymous pages (COW copies in a private file mapping); false only for hole punch
     */
    void invalidateAndZap(long start, long end, InvalidateReason reason, boolean anonToo) {
        notifiers.invalidate(new MmuRange(start, end), reason, () -> zap(start, end, anonToo));
    }

    private void zap(long start, long end, boolean anonToo) {
        LongList freed = new LongList();
        ptl.lock();
        try {
            pt.clearRange(start >>> PAGE_SHIFT, end >>> PAGE_SHIFT, pte -> anonToo || !Pte.anon(pte),
                    pte -> {
                        if (!Pte.isSpecial(pte)) {
                            freed.add(Pte.pfn(pte));
                        }
                    });
        } finally {
            ptl.unlock();
        }
        for (int i = 0; i < freed.size(); i++) {
            mem.putPage(freed.get(i));
        }
    }

    /** Installs {@code pte} if the slot is still empty ({@code set_pte_at} after {@code pte_none} recheck). */
    boolean installIfNone(long vpn, long pte) {
        ptl.lock();
        try {
            if (pt.get(vpn) != Pte.NONE) {
                return false;
            }
            pt.set(vpn, pte);
            return true;
        } finally {
            ptl.unlock();
        }
    }

    /**
     * The regions covering {@code [start, end)}, in order; {@code EFAULT} naming the first unmapped address
     * when any part is not mapped. Caller holds {@link #mmapLock}.
     */
    List<Region> covering(long start, long end, String what) {
        List<Region> regions = vmas.overlapping(start, end);
        long hole = VmaTree.firstHole(regions, start, end);
        if (hole >= 0) {
            throw new ErrnoException(Errno.EFAULT, what + " of 0x" + Long.toHexString(start) + "+" + (end - start)
                    + " in " + name + ": address 0x" + Long.toHexString(hole) + " is not mapped");
        }
        return regions;
    }

    /**
     * {@code EFAULT} (the kernel's {@code SIGBUS}) when a file page of {@code r} inside {@code [start, end)} lies
     * past the end of its file, checked before anything is changed.
     */
    static void checkFilePages(Region r, long start, long end) {
        if (r.inode() == null) {
            return;
        }
        long s = Math.max(start, r.start);
        long e = Math.min(end, r.end);
        InodePages.checkPagesInside(r.inode(), r.fileIndex(s), r.fileIndex(e - 1) + 1);
    }

    /** Reads one entry under the page-table lock. */
    long pte(long vpn) {
        ptl.lock();
        try {
            return pt.get(vpn);
        } finally {
            ptl.unlock();
        }
    }
}
