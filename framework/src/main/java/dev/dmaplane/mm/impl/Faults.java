package dev.dmaplane.mm.impl;

import dev.dmaplane.fs.Inode;
import dev.dmaplane.fs.impl.InodePages;
import dev.dmaplane.mm.InvalidateReason;
import dev.dmaplane.mm.MmuRange;

import java.lang.foreign.MemorySegment;

import static dev.dmaplane.mem.HostMemory.PAGE_SHIFT;
import static dev.dmaplane.mem.HostMemory.PAGE_SIZE;

/**
 * Page faults ({@code handle_mm_fault} in {@code mm/memory.c}): anonymous pages are zero-filled frames allocated
 * on first touch ({@code do_anonymous_page}); file pages come from the page cache or the DAX blocks
 * ({@code do_read_fault}, {@code do_shared_fault}); a write to a private file mapping copies the page first
 * ({@code do_cow_fault}, or {@code wp_page_copy} when the file page is already mapped). Callers hold
 * {@code mmap_lock} at least for reading and not the page-table lock.
 */
final class Faults {
    private Faults() {
    }

    /**
     * The entry for {@code vpn}, faulted in as the access needs, returned with {@code mm.ptl} HELD: the caller
     * uses the frame and unlocks ({@code follow_page_mask} retried after {@code faultin_page}, as
     * {@code __get_user_pages} does).
     *
     * @param write   the access writes (needs a writable, exclusive page)
     * @param unshare a read-only long-term pin of a page-cache page in a private mapping: break COW now
     *                ({@code gup_must_unshare})
     */
    static long followLocked(Mm mm, Region r, long vpn, boolean write, boolean unshare) {
        boolean exclusive = write || unshare;
        while (true) {
            mm.ptl.lock();
            long pte = mm.pt.get(vpn);
            if (pte != Pte.NONE && !needsCopy(r, pte, exclusive)) {
                return pte;
            }
            mm.ptl.unlock();
            fault(mm, r, vpn, exclusive, write && r.shared());
        }
    }

    /** Whether an exclusive access must copy the page first: a file page in a private mapping. */
    static boolean needsCopy(Region r, long pte, boolean exclusive) {
        return exclusive && !r.shared() && !Pte.anon(pte);
    }

    private static void fault(Mm mm, Region r, long vpn, boolean exclusive, boolean dirtyShared) {
        if (r.anonymous()) {
            anonymousFault(mm, vpn);
            return;
        }
        long pte = mm.pte(vpn);
        if (pte == Pte.NONE) {
            if (exclusive && !r.shared()) {
                cowFault(mm, r, vpn);
            } else {
                long index = r.fileIndex(vpn << PAGE_SHIFT);
                InodePages.fault(r.inode(), index, dirtyShared, pfn -> {
                    if (!mm.installIfNone(vpn, Pte.of(pfn, false))) {
                        mm.mem.putPage(pfn);
                    }
                });
            }
        } else if (needsCopy(r, pte, exclusive)) {
            copyMappedPage(mm, vpn, pte);
        }
    }

    /** {@code do_anonymous_page}: a fresh zeroed frame; a racing fault that won keeps its own. */
    private static void anonymousFault(Mm mm, long vpn) {
        long pfn = mm.mem.allocPages(0);
        if (!mm.installIfNone(vpn, Pte.of(pfn, true))) {
            mm.mem.putPage(pfn);
        }
    }

    /** {@code do_cow_fault}: the first touch of a private file page is a write: map a private copy at once. */
    private static void cowFault(Mm mm, Region r, long vpn) {
        long copy = mm.mem.allocPages(0);
        boolean[] installed = {false};
        try {
            Inode inode = r.inode();
            InodePages.fault(inode, r.fileIndex(vpn << PAGE_SHIFT), false, src -> {
                try {
                    MemorySegment.copy(mm.mem.frame(src), 0, mm.mem.frame(copy), 0, PAGE_SIZE);
                } finally {
                    mm.mem.putPage(src);
                }
                installed[0] = mm.installIfNone(vpn, Pte.of(copy, true));
            });
        } finally {
            if (!installed[0]) {
                mm.mem.putPage(copy);
            }
        }
    }

    /**
     * {@code wp_page_copy}: replaces a mapped file page by a private copy; the old entry is invalidated first
     * (reason CLEAR), as secondary MMUs must stop using the shared page.
     */
    private static void copyMappedPage(Mm mm, long vpn, long oldPte) {
        long copy = mm.mem.allocPages(0);
        boolean[] replaced = {false};
        long addr = vpn << PAGE_SHIFT;
        try {
            mm.notifiers.invalidate(new MmuRange(addr, addr + PAGE_SIZE), InvalidateReason.CLEAR, () -> {
                mm.ptl.lock();
                try {
                    if (mm.pt.get(vpn) == oldPte) {
                        MemorySegment.copy(mm.mem.frame(Pte.pfn(oldPte)), 0, mm.mem.frame(copy), 0, PAGE_SIZE);
                        mm.pt.set(vpn, Pte.of(copy, true));
                        replaced[0] = true;
                    }
                } finally {
                    mm.ptl.unlock();
                }
            });
        } finally {
            if (replaced[0]) {
                mm.mem.putPage(Pte.pfn(oldPte));
            } else {
                mm.mem.putPage(copy);
            }
        }
    }
}
