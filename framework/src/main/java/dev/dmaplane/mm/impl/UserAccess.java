package dev.dmaplane.mm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.impl.InodePages;
import dev.dmaplane.mm.Prot;

import java.lang.foreign.MemorySegment;
import java.util.List;

import static dev.dmaplane.mem.HostMemory.PAGE_SHIFT;
import static dev.dmaplane.mem.HostMemory.PAGE_SIZE;

/**
 * CPU loads and stores through an address space, as {@code access_process_vm} performs them: page by page,
 * faulting pages in, breaking copy-on-write for stores, marking shared file pages dirty. Permissions are checked
 * for the whole range first, so a refused access changes nothing: a store to a VMA without {@code PROT_WRITE}
 * (or a load without {@code PROT_READ}) fails with {@code EFAULT}, the error {@code copy_to_user} and GUP report
 * where a user-space instruction would take {@code SIGSEGV} ({@code SEGV_ACCERR}). An access to a BAR mapping goes
 * to the BAR ({@link PfnMap}), its pages faulted in first.
 */
public final class UserAccess {
    private UserAccess() {
    }

    /** Loads {@code dst.byteSize()} bytes from {@code addr}. */
    public static void read(Mm mm, long addr, MemorySegment dst) {
        copy(mm, addr, dst, false);
    }

    /** Stores {@code src} at {@code addr}. */
    public static void write(Mm mm, long addr, MemorySegment src) {
        copy(mm, addr, src, true);
    }

    private static void copy(Mm mm, long addr, MemorySegment buf, boolean write) {
        long len = buf.byteSize();
        if (len == 0) {
            return;
        }
        String what = write ? "store" : "load";
        if (addr < 0 || addr > Mm.TASK_SIZE - len) {
            throw new ErrnoException(Errno.EFAULT, what + " at 0x" + Long.toHexString(addr) + "+" + len
                    + " lies outside user space");
        }
        mm.mmapLock.readLock().lock();
        try {
            mm.checkAlive();
            List<Region> regions = mm.covering(addr, addr + len, what);
            for (Region r : regions) {
                if (write ? !r.writable() : !r.readable()) {
                    throw new ErrnoException(Errno.EFAULT, "SEGV_ACCERR: " + what + " at 0x" + Long.toHexString(addr)
                            + " hits VMA 0x" + Long.toHexString(r.start) + "-0x" + Long.toHexString(r.end)
                            + " with protection " + Prot.letters(r.prot));
                }
                Mm.checkFilePages(r, addr, addr + len);
                if (r.pfnmap()) {
                    r.pfnMap.populate(r, addr, addr + len, what);
                }
            }
            long done = 0;
            int ri = 0;
            while (done < len) {
                long at = addr + done;
                while (at >= regions.get(ri).end) {
                    ri++;
                }
                Region r = regions.get(ri);
                long vpn = at >>> PAGE_SHIFT;
                long off = at & Mm.PAGE_MASK;
                long n = Math.min(PAGE_SIZE - off, len - done);
                if (r.pfnmap()) {
                    r.pfnMap.access(r, at, buf, done, n, write);
                    done += n;
                    continue;
                }
                long pte = Faults.followLocked(mm, r, vpn, write, false);
                long pfn = Pte.pfn(pte);
                try {
                    MemorySegment frame = mm.mem.frame(pfn);
                    if (write) {
                        MemorySegment.copy(buf, done, frame, off, n);
                    } else {
                        MemorySegment.copy(frame, off, buf, done, n);
                    }
                } finally {
                    mm.ptl.unlock();
                }
                if (write && r.shared()) {
                    InodePages.setPageDirty(r.inode(), r.fileIndex(at), pfn);
                }
                done += n;
            }
        } finally {
            mm.mmapLock.readLock().unlock();
        }
    }
}
