package dev.dmaplane.mm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mm.InvalidateReason;
import dev.dmaplane.mm.MmuRange;
import dev.dmaplane.trace.TraceKind;

import java.lang.foreign.MemorySegment;

import static dev.dmaplane.mem.HostMemory.PAGE_SHIFT;
import static dev.dmaplane.mem.HostMemory.PAGE_SIZE;

/**
 * Page migration of one anonymous page ({@code move_pages(2)}, {@code mm/migrate.c}): copy to a new frame, switch
 * the entry, free the old frame. Migration needs the page's only reference to be its mapping
 * ({@code folio_migrate_mapping} compares the reference count), so a page that may be DMA-pinned fails with
 * {@code EBUSY}; the check comes first, so a refused migration changes nothing.
 */
public final class Migration {
    private Migration() {
    }

    /**
     * @return the new physical address of {@code addr}
     * @throws ErrnoException {@code EFAULT} unmapped, {@code ENOENT} page not present, {@code EINVAL} not an
     *                        anonymous page, {@code EBUSY} pinned or otherwise referenced, {@code ENOMEM}
     */
    public static long migrate(Mm mm, long addr) {
        if (addr < 0 || addr >= Mm.TASK_SIZE) {
            throw new ErrnoException(Errno.EFAULT, "migrate of 0x" + Long.toHexString(addr) + ": outside user space");
        }
        mm.mmapLock.writeLock().lock();
        try {
            mm.checkAlive();
            if (mm.vmas.find(addr) == null) {
                throw new ErrnoException(Errno.EFAULT, "migrate of 0x" + Long.toHexString(addr) + " in " + mm.name
                        + ": not mapped");
            }
            long vpn = addr >>> PAGE_SHIFT;
            long pte = mm.pte(vpn);
            if (pte == Pte.NONE) {
                throw new ErrnoException(Errno.ENOENT, "migrate of 0x" + Long.toHexString(addr) + " in " + mm.name
                        + ": page not present");
            }
            if (!Pte.anon(pte)) {
                throw new ErrnoException(Errno.EINVAL, "migrate of 0x" + Long.toHexString(addr) + " in " + mm.name
                        + ": a " + (Pte.isSpecial(pte) ? "BAR" : "file") + " page, only anonymous pages migrate here");
            }
            long old = Pte.pfn(pte);
            refuseBusy(mm, addr, old);
            long fresh = mm.mem.allocPages(0);
            long page = vpn << PAGE_SHIFT;
            boolean[] moved = {false};
            try {
                mm.notifiers.invalidate(new MmuRange(page, page + PAGE_SIZE), InvalidateReason.MIGRATE, () -> {
                    mm.ptl.lock();
                    try {
                        if (mm.pt.get(vpn) == pte && mm.mem.refCount(old) == 1) {
                            MemorySegment.copy(mm.mem.frame(old), 0, mm.mem.frame(fresh), 0, PAGE_SIZE);
                            mm.pt.set(vpn, Pte.of(fresh, true));
                            moved[0] = true;
                        }
                    } finally {
                        mm.ptl.unlock();
                    }
                });
            } finally {
                mm.mem.putPage(moved[0] ? old : fresh);
            }
            if (!moved[0]) {
                throw new ErrnoException(Errno.EBUSY, "migrate of 0x" + Long.toHexString(addr) + " in " + mm.name
                        + ": the page gained a reference while migrating");
            }
            mm.tracer.emit(TraceKind.MIGRATE, mm.name, page, PAGE_SIZE,
                    "pfn 0x" + Long.toHexString(old) + " -> 0x" + Long.toHexString(fresh));
            return (fresh << PAGE_SHIFT) | (addr & Mm.PAGE_MASK);
        } finally {
            mm.mmapLock.writeLock().unlock();
        }
    }

    private static void refuseBusy(Mm mm, long addr, long pfn) {
        if (mm.mem.pinCount(pfn) > 0) {
            throw new ErrnoException(Errno.EBUSY, "migrate of 0x" + Long.toHexString(addr) + " in " + mm.name
                    + ": frame 0x" + Long.toHexString(pfn) + " may be DMA-pinned (folio_maybe_dma_pinned)");
        }
        if (mm.mem.refCount(pfn) != 1) {
            throw new ErrnoException(Errno.EBUSY, "migrate of 0x" + Long.toHexString(addr) + " in " + mm.name
                    + ": frame 0x" + Long.toHexString(pfn) + " has " + mm.mem.refCount(pfn)
                    + " references, migration expects only its mapping's");
        }
    }
}
