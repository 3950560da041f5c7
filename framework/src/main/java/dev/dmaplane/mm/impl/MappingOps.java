package dev.dmaplane.mm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.fs.impl.InodePages;
import dev.dmaplane.mm.InvalidateReason;
import dev.dmaplane.mm.MmuRange;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.mm.VmaBacking;
import dev.dmaplane.pci.PciFunction;

import java.util.ArrayList;
import java.util.List;

/**
 * Layout changes of an address space, each under {@code mmap_lock} held for writing: {@code mmap}
 * ({@code do_mmap}), {@code munmap} ({@code do_vmi_munmap}), {@code mprotect} ({@code do_mprotect_pkey}) and
 * {@code exit_mmap}. VMAs are split where a change covers part of one; adjacent VMAs are not merged again
 * ({@code vma_merge} is not modelled).
 */
public final class MappingOps {
    private MappingOps() {
    }

    /**
     * Maps {@code length} bytes (rounded up to pages) of {@code backing}.
     *
     * @param fixedAddr the address for {@code MAP_FIXED} (replacing what is mapped there), or -1 to let the
     *                  address space choose, top-down below {@link Mm#MMAP_BASE}
     * @return the start address
     * @throws ErrnoException {@code EINVAL} for a length below 1, unknown prot bits or an unaligned fixed address,
     *                        {@code EPERM} below {@link Mm#MMAP_MIN_ADDR}, {@code ENOMEM} when the range does not
     *                        fit user space, {@code ENOENT} for an evicted inode, {@code EFAULT} after exit
     */
    public static long mmap(Mm mm, long fixedAddr, long length, int prot, VmaBacking backing) {
        return mmap(mm, fixedAddr, length, prot, backing, null);
    }

    /**
     * {@code mmap} of bytes {@code [offset, offset + length)} of BAR {@code bar} of {@code fn}, shared, with
     * {@code VM_IO | VM_PFNMAP} ({@code vfio_pci_core_mmap}): no page is present until touched, see {@link PfnMap}.
     *
     * @throws ErrnoException as {@link PfnMap#open} and {@link #mmap(Mm, long, long, int, VmaBacking)} refuse
     */
    public static long mmapBar(Mm mm, PciFunction fn, int bar, long offset, long length, int prot) {
        PfnMap map = PfnMap.open(mm, fn, bar, offset, length);
        return mmap(mm, -1, length, prot, new VmaBacking.PciBar(fn, bar, offset), map);
    }

    private static long mmap(Mm mm, long fixedAddr, long length, int prot, VmaBacking backing, PfnMap pfnMap) {
        if (length <= 0) {
            throw new ErrnoException(Errno.EINVAL, "mmap length must be > 0, not " + length);
        }
        if (length > Mm.TASK_SIZE) {
            throw new ErrnoException(Errno.ENOMEM, "mmap length " + length + " exceeds user space");
        }
        if (!Prot.isValid(prot)) {
            throw new ErrnoException(Errno.EINVAL, "unknown protection bits 0x" + Integer.toHexString(prot));
        }
        long len = pageAlign(length);
        if (fixedAddr != -1) {
            if ((fixedAddr & Mm.PAGE_MASK) != 0) {
                throw new ErrnoException(Errno.EINVAL, "MAP_FIXED address 0x" + Long.toHexString(fixedAddr)
                        + " is not page aligned");
            }
            if (fixedAddr < Mm.MMAP_MIN_ADDR) {
                throw new ErrnoException(Errno.EPERM, "MAP_FIXED address 0x" + Long.toHexString(fixedAddr)
                        + " is below mmap_min_addr 0x" + Long.toHexString(Mm.MMAP_MIN_ADDR));
            }
            if (fixedAddr > Mm.TASK_SIZE - len) {
                throw new ErrnoException(Errno.ENOMEM, "MAP_FIXED range 0x" + Long.toHexString(fixedAddr) + "+"
                        + len + " passes the end of user space");
            }
        }
        mm.mmapLock.writeLock().lock();
        try {
            mm.checkAlive();
            long addr = fixedAddr;
            if (addr == -1) {
                addr = mm.vmas.findGapTopDown(len, Mm.MMAP_MIN_ADDR, Mm.MMAP_BASE);
                if (addr < 0) {
                    throw new ErrnoException(Errno.ENOMEM, "no free range of " + len + " bytes in " + mm.name);
                }
            }
            Region region = new Region(mm, addr, addr + len, prot, backing, mayWrite(backing, prot), pfnMap);
            Inode inode = region.inode();
            if (inode != null) {
                InodePages.addMapper(inode, region);
            }
            try {
                if (fixedAddr != -1) {
                    munmapLocked(mm, addr, addr + len);
                }
                mm.vmas.insert(region);
                if (pfnMap != null) {
                    pfnMap.link(region);
                }
            } catch (RuntimeException e) {
                if (inode != null) {
                    InodePages.removeMapper(inode, region);
                }
                throw e;
            }
            return addr;
        } finally {
            mm.mmapLock.writeLock().unlock();
        }
    }

    /**
     * {@code VM_MAYWRITE} of a new mapping, after shmem's seal check ({@code shmem_mmap}, {@code seal_check_write}):
     * a shared mapping of a file sealed with {@code F_SEAL_WRITE} or {@code F_SEAL_FUTURE_WRITE} is refused with
     * {@code EPERM} if writable, and never becomes writable otherwise.
     */
    private static boolean mayWrite(VmaBacking backing, int prot) {
        if (!(backing instanceof VmaBacking.File f) || !f.shared() || f.inode() == null || f.inode().isDax()) {
            return true;
        }
        Inode inode = f.inode();
        if ((inode.seals() & (Inode.F_SEAL_WRITE | Inode.F_SEAL_FUTURE_WRITE)) == 0) {
            return true;
        }
        if ((prot & Prot.PROT_WRITE) != 0) {
            throw new ErrnoException(Errno.EPERM, "writable shared mapping of " + inode.path()
                    + ", which is sealed against writes (seals 0x" + Integer.toHexString(inode.seals()) + ")");
        }
        return false;
    }

    /**
     * Unmaps {@code [addr, addr + length)}; parts of VMAs outside stay as new, smaller VMAs. Interval notifiers
     * see reason UNMAP before the pages go; pinned frames stay allocated until unpinned. Unmapping a hole is not
     * an error.
     *
     * @throws ErrnoException {@code EINVAL} for an unaligned address, a length below 1, or a range outside user
     *                        space, {@code EFAULT} after exit
     */
    public static void munmap(Mm mm, long addr, long length) {
        if ((addr & Mm.PAGE_MASK) != 0) {
            throw new ErrnoException(Errno.EINVAL, "munmap address 0x" + Long.toHexString(addr)
                    + " is not page aligned");
        }
        if (length <= 0) {
            throw new ErrnoException(Errno.EINVAL, "munmap length must be > 0, not " + length);
        }
        if (addr < 0 || length > Mm.TASK_SIZE || addr > Mm.TASK_SIZE - pageAlign(length)) {
            throw new ErrnoException(Errno.EINVAL, "munmap range 0x" + Long.toHexString(addr) + "+" + length
                    + " lies outside user space");
        }
        mm.mmapLock.writeLock().lock();
        try {
            mm.checkAlive();
            munmapLocked(mm, addr, addr + pageAlign(length));
        } finally {
            mm.mmapLock.writeLock().unlock();
        }
    }

    /**
     * Changes the protection of {@code [addr, addr + length)}, splitting VMAs at the edges; notifiers see
     * reason PROTECTION. The whole range is checked first, so a range with a hole changes nothing (the kernel
     * may have changed the VMAs before the hole).
     *
     * @throws ErrnoException {@code EINVAL} for an unaligned address or unknown bits, {@code ENOMEM} when part of
     *                        the range is not mapped or it wraps, {@code EACCES} for {@code PROT_WRITE} on a shared
     *                        mapping without {@code VM_MAYWRITE}, {@code EFAULT} after exit
     */
    public static void mprotect(Mm mm, long addr, long length, int prot) {
        if ((addr & Mm.PAGE_MASK) != 0 || addr < 0) {
            throw new ErrnoException(Errno.EINVAL, "mprotect address 0x" + Long.toHexString(addr)
                    + " is not page aligned");
        }
        if (!Prot.isValid(prot)) {
            throw new ErrnoException(Errno.EINVAL, "unknown protection bits 0x" + Integer.toHexString(prot));
        }
        if (length == 0) {
            return;
        }
        if (length < 0 || length > Mm.TASK_SIZE || addr > Mm.TASK_SIZE - pageAlign(length)) {
            throw new ErrnoException(Errno.ENOMEM, "mprotect range 0x" + Long.toHexString(addr) + "+" + length
                    + " lies outside user space");
        }
        long start = addr;
        long end = addr + pageAlign(length);
        mm.mmapLock.writeLock().lock();
        try {
            mm.checkAlive();
            List<Region> hit = mm.vmas.overlapping(start, end);
            long hole = VmaTree.firstHole(hit, start, end);
            if (hole >= 0) {
                throw new ErrnoException(Errno.ENOMEM, "mprotect of 0x" + Long.toHexString(start) + "-0x"
                        + Long.toHexString(end) + " in " + mm.name + ": 0x" + Long.toHexString(hole)
                        + " is not mapped");
            }
            if ((prot & Prot.PROT_WRITE) != 0) {
                for (Region r : hit) {
                    if (r.shared() && !r.mayWrite) { // do_mprotect_pkey: VM_WRITE without VM_MAYWRITE
                        throw new ErrnoException(Errno.EACCES, "mprotect(PROT_WRITE) of 0x" + Long.toHexString(r.start)
                                + "-0x" + Long.toHexString(r.end) + ", a shared mapping of " + r.inode().path()
                                + " made while it was sealed against writes");
                    }
                }
            }
            if (hit.stream().allMatch(r -> r.prot == prot)) {
                return;
            }
            mm.notifiers.invalidate(new MmuRange(start, end), InvalidateReason.PROTECTION, () -> { });
            for (Region r : hit) {
                if (r.prot == prot) {
                    continue;
                }
                List<Region> pieces = new ArrayList<>(3);
                if (r.start < start) {
                    pieces.add(r.slice(r.start, start));
                }
                pieces.add(r.slice(Math.max(r.start, start), Math.min(r.end, end)).withProt(prot));
                if (r.end > end) {
                    pieces.add(r.slice(end, r.end));
                }
                replace(mm, r, pieces);
            }
        } finally {
            mm.mmapLock.writeLock().unlock();
        }
    }

    /**
     * {@code exit_mmap}: notifiers see RELEASE over all of user space, every page is unmapped (pinned frames
     * stay until unpinned), every VMA goes. Later calls fail with {@code EFAULT}; a second exit does nothing.
     */
    public static void exit(Mm mm) {
        mm.mmapLock.writeLock().lock();
        try {
            if (mm.exited) {
                return;
            }
            mm.exited = true;
            mm.invalidateAndZap(0, Mm.TASK_SIZE, InvalidateReason.RELEASE, true);
            List<Region> all = mm.vmas.all();
            mm.vmas.clear();
            for (Region r : all) {
                if (r.inode() != null) {
                    InodePages.removeMapper(r.inode(), r);
                }
                if (r.pfnMap != null) {
                    r.pfnMap.replace(r, List.of());
                }
            }
        } finally {
            mm.mmapLock.writeLock().unlock();
        }
    }

    /** The body of munmap; caller holds {@code mmap_lock} for writing. */
    private static void munmapLocked(Mm mm, long start, long end) {
        List<Region> hit = mm.vmas.overlapping(start, end);
        if (hit.isEmpty()) {
            return;
        }
        long s = Math.max(start, hit.getFirst().start);
        long e = Math.min(end, hit.getLast().end);
        mm.invalidateAndZap(s, e, InvalidateReason.UNMAP, true);
        for (Region r : hit) {
            List<Region> pieces = new ArrayList<>(2);
            if (r.start < start) {
                pieces.add(r.slice(r.start, start));
            }
            if (r.end > end) {
                pieces.add(r.slice(end, r.end));
            }
            replace(mm, r, pieces);
        }
    }

    /** Swaps a region for its pieces in the VMA tree and in its file's {@code i_mmap} (atomically there). */
    private static void replace(Mm mm, Region old, List<Region> pieces) {
        mm.vmas.remove(old);
        for (Region p : pieces) {
            mm.vmas.insert(p);
        }
        Inode inode = old.inode();
        if (inode != null) {
            InodePages.replaceMappers(inode, List.of(old), pieces);
        }
        if (old.pfnMap != null) {
            old.pfnMap.replace(old, pieces);
        }
    }

    private static long pageAlign(long length) {
        return (length + Mm.PAGE_MASK) & ~Mm.PAGE_MASK;
    }
}
