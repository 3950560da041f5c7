package dev.dmaplane.mm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.fs.impl.InodePages;
import dev.dmaplane.mm.PinFlags;
import dev.dmaplane.mm.PinnedPages;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.mm.VmaBacking;
import dev.dmaplane.trace.TraceKind;

import java.util.List;
import java.util.Set;

import static dev.dmaplane.mem.HostMemory.PAGE_SHIFT;

/**
 * {@code pin_user_pages} ({@code mm/gup.c}, {@code Documentation/core-api/pin_user_pages.rst}): checks every VMA
 * of the range as {@code check_vma_flags} does, faults pages in, and pins each frame ({@code FOLL_PIN}). Unlike
 * the kernel call, which may return fewer pages than asked, a pin here is all or nothing: on any failure the pages
 * pinned so far are unpinned before the error is thrown. Cost is linear in the pages pinned.
 */
public final class Gup {
    private Gup() {
    }

    public static PinnedPages pin(Mm mm, long addr, long length, Set<PinFlags> flags) {
        if (flags == null) {
            throw new ErrnoException(Errno.EINVAL, "pin flags are null");
        }
        if (length <= 0) {
            throw new ErrnoException(Errno.EINVAL, "pin length must be > 0, not " + length);
        }
        if (addr < 0 || addr > Mm.TASK_SIZE - length) {
            throw new ErrnoException(Errno.EFAULT, "pin of 0x" + Long.toHexString(addr) + "+" + length
                    + " lies outside user space");
        }
        long firstVpn = addr >>> PAGE_SHIFT;
        long endVpn = (addr + length + Mm.PAGE_MASK) >>> PAGE_SHIFT;
        long pages = endVpn - firstVpn;
        if (pages > Integer.MAX_VALUE - 8) {
            throw new ErrnoException(Errno.ENOMEM, "pin of " + pages + " pages is more than one call can hold");
        }
        boolean write = flags.contains(PinFlags.WRITE);
        boolean longterm = flags.contains(PinFlags.LONGTERM);
        mm.mmapLock.readLock().lock();
        try {
            mm.checkAlive();
            List<Region> regions = mm.covering(addr, addr + length, "pin");
            for (Region r : regions) {
                checkVmaFlags(r, write, longterm);
                Mm.checkFilePages(r, addr, addr + length);
            }
            long[] pfns = new long[(int) pages];
            Inode[] owners = null;
            long[] indexes = null;
            int count = 0;
            try {
                int ri = 0;
                for (long vpn = firstVpn; vpn < endVpn; vpn++) {
                    long va = vpn << PAGE_SHIFT;
                    while (va >= regions.get(ri).end) {
                        ri++;
                    }
                    Region r = regions.get(ri);
                    // gup_must_unshare: a read-only long-term pin of a file page in a private (COW) mapping
                    // breaks COW now, or a later write would leave the device looking at the stale page
                    boolean unshare = longterm && !write && !r.shared() && !r.anonymous();
                    long pte = Faults.followLocked(mm, r, vpn, write, unshare);
                    long pfn = Pte.pfn(pte);
                    try {
                        mm.mem.pinPage(pfn);
                    } finally {
                        mm.ptl.unlock();
                    }
                    pfns[count++] = pfn;
                    if (!Pte.anon(pte)) {
                        if (owners == null) {
                            owners = new Inode[pfns.length];
                            indexes = new long[pfns.length];
                        }
                        owners[count - 1] = r.inode();
                        indexes[count - 1] = r.fileIndex(va);
                        if (write) {
                            InodePages.setPageDirty(r.inode(), indexes[count - 1], pfn);
                        }
                    }
                }
            } catch (RuntimeException e) {
                for (int i = 0; i < count; i++) {
                    mm.mem.unpinPage(pfns[i]);
                }
                throw e;
            }
            mm.pinned.addAndGet(count);
            mm.tracer.emit(TraceKind.PIN, mm.name, addr, length, "pages=" + count + " flags=" + flags);
            return new PinnedRange(mm, addr, length, pfns, owners, indexes, flags);
        } finally {
            mm.mmapLock.readLock().unlock();
        }
    }

    /**
     * {@code hmm_range_fault} with {@code HMM_PFN_REQ_FAULT} (and {@code HMM_PFN_REQ_WRITE} for {@code write}), as
     * {@code Documentation/mm/hmm.rst} describes it: faults every page of the range in and returns the physical
     * address of each, taking neither a pin nor a reference. The addresses stay valid only until the next
     * invalidation of the range, which a mirror detects with its interval subscription's {@code readRetry}.
     */
    public static long[] fault(Mm mm, long addr, long length, boolean write) {
        if (length <= 0) {
            throw new ErrnoException(Errno.EINVAL, "fault length must be > 0, not " + length);
        }
        if (addr < 0 || addr > Mm.TASK_SIZE - length) {
            throw new ErrnoException(Errno.EFAULT, "fault of 0x" + Long.toHexString(addr) + "+" + length
                    + " lies outside user space");
        }
        long firstVpn = addr >>> PAGE_SHIFT;
        long endVpn = (addr + length + Mm.PAGE_MASK) >>> PAGE_SHIFT;
        if (endVpn - firstVpn > Integer.MAX_VALUE - 8) {
            throw new ErrnoException(Errno.ENOMEM, "fault of " + (endVpn - firstVpn) + " pages is more than one call can hold");
        }
        mm.mmapLock.readLock().lock();
        try {
            mm.checkAlive();
            List<Region> regions = mm.covering(addr, addr + length, "hmm_range_fault");
            for (Region r : regions) {
                String vma = "VMA 0x" + Long.toHexString(r.start) + "-0x" + Long.toHexString(r.end) + " ("
                        + Prot.letters(r.prot) + (r.shared() ? "s" : "p") + ")";
                refusePfnmap(r, vma, "hmm_range_fault");
                if (!r.readable()) {
                    throw new ErrnoException(Errno.EFAULT, "hmm_range_fault of unreadable " + vma);
                }
                if (write && !r.writable()) {
                    throw new ErrnoException(Errno.EPERM, "hmm_range_fault for write of read-only " + vma);
                }
                Mm.checkFilePages(r, addr, addr + length);
            }
            long[] phys = new long[(int) (endVpn - firstVpn)];
            int ri = 0;
            for (long vpn = firstVpn; vpn < endVpn; vpn++) {
                long va = vpn << PAGE_SHIFT;
                while (va >= regions.get(ri).end) {
                    ri++;
                }
                Region r = regions.get(ri);
                long pte = Faults.followLocked(mm, r, vpn, write, false);
                try {
                    phys[(int) (vpn - firstVpn)] = Pte.pfn(pte) << PAGE_SHIFT;
                    if (write && !Pte.anon(pte)) {
                        InodePages.setPageDirty(r.inode(), r.fileIndex(va), Pte.pfn(pte));
                    }
                } finally {
                    mm.ptl.unlock();
                }
            }
            return phys;
        } finally {
            mm.mmapLock.readLock().unlock();
        }
    }

    /** {@code check_vma_flags} in {@code mm/gup.c}, in its order. */
    static void checkVmaFlags(Region r, boolean write, boolean longterm) {
        String vma = "VMA 0x" + Long.toHexString(r.start) + "-0x" + Long.toHexString(r.end) + " ("
                + Prot.letters(r.prot) + (r.shared() ? "s" : "p") + ")";
        refusePfnmap(r, vma, "pin_user_pages");
        if (longterm && r.dax()) {
            throw new ErrnoException(Errno.EOPNOTSUPP, "FOLL_LONGTERM pin of fsdax " + vma
                    + ": truncate would have to wait for the DMA to end (vma_is_fsdax)");
        }
        if (write) {
            if (longterm && needsDirtyTracking(r)) {
                throw new ErrnoException(Errno.EFAULT, "FOLL_LONGTERM|FOLL_WRITE pin of shared file " + vma
                        + ": the file system tracks dirty pages (writable_file_mapping_allowed)");
            }
            if (!r.writable()) {
                throw new ErrnoException(Errno.EFAULT, "FOLL_WRITE pin of read-only " + vma);
            }
        } else if (!r.readable()) {
            throw new ErrnoException(Errno.EFAULT, "pin of unreadable " + vma);
        }
    }

    /**
     * {@code VM_IO | VM_PFNMAP}: a BAR mapping has no {@code struct page} to pin or mirror, so {@code check_vma_flags}
     * (and {@code hmm_vma_walk_test}) answer {@code EFAULT}; a driver that needs DMA to a BAR takes a dma-buf.
     */
    private static void refusePfnmap(Region r, String vma, String what) {
        if (r.pfnmap()) {
            throw new ErrnoException(Errno.EFAULT, what + " of VM_IO|VM_PFNMAP " + vma + ", a mapping of "
                    + r.backing + ": it has no pages (check_vma_flags)");
        }
    }

    /**
     * {@code vma_needs_dirty_tracking}: a shared writable mapping of a file whose file system writes pages back.
     * Every non-DAX {@link dev.dmaplane.fs.MemFs} file is backed by its disk (no shmem here).
     */
    private static boolean needsDirtyTracking(Region r) {
        return r.backing instanceof VmaBacking.File && r.shared() && r.writable();
    }
}
