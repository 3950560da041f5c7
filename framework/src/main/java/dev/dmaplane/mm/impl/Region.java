package dev.dmaplane.mm.impl;

import dev.dmaplane.fs.impl.FileMapper;
import dev.dmaplane.fs.Inode;
import dev.dmaplane.mm.InvalidateReason;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.mm.Vma;
import dev.dmaplane.mm.VmaBacking;
import dev.dmaplane.mm.VmaFlag;

import java.util.EnumSet;
import java.util.Set;

import static dev.dmaplane.mem.HostMemory.PAGE_SHIFT;

/**
 * The live form of a VMA inside an address space: immutable, replaced whole when {@code munmap} or
 * {@code mprotect} splits it. For a file it is also the entry in the inode's {@code i_mmap}, through which
 * truncate reaches this address space's page table.
 */
final class Region implements FileMapper {
    final Mm mm;
    final long start;
    final long end;
    final int prot;
    final VmaBacking backing;
    /**
     * {@code VM_MAYWRITE}: {@code mprotect} may add {@code PROT_WRITE}. Cleared for a read-only shared mapping of a
     * file sealed against writes when it was mapped, as shmem's mmap does; set otherwise.
     */
    final boolean mayWrite;
    /** The BAR mapping this region is part of ({@code VM_IO | VM_PFNMAP}), or null for memory. */
    final PfnMap pfnMap;

    Region(Mm mm, long start, long end, int prot, VmaBacking backing, boolean mayWrite) {
        this(mm, start, end, prot, backing, mayWrite, null);
    }

    Region(Mm mm, long start, long end, int prot, VmaBacking backing, boolean mayWrite, PfnMap pfnMap) {
        this.mm = mm;
        this.start = start;
        this.end = end;
        this.prot = prot;
        this.backing = backing;
        this.mayWrite = mayWrite;
        this.pfnMap = pfnMap;
    }

    boolean anonymous() {
        return backing instanceof VmaBacking.Anonymous;
    }

    /** {@code vma_is_fsdax}. */
    boolean dax() {
        return backing instanceof VmaBacking.Dax;
    }

    /** {@code VM_SHARED}. */
    boolean shared() {
        return switch (backing) {
            case VmaBacking.Anonymous a -> false;
            case VmaBacking.File f -> f.shared();
            case VmaBacking.Dax d -> d.shared();
            case VmaBacking.PciBar b -> true;
        };
    }

    /** The mapped file, or null for anonymous memory. */
    Inode inode() {
        return switch (backing) {
            case VmaBacking.Anonymous a -> null;
            case VmaBacking.File f -> f.inode();
            case VmaBacking.Dax d -> d.inode();
            case VmaBacking.PciBar b -> null;
        };
    }

    /** {@code vm_pgoff}. */
    long pgoff() {
        return switch (backing) {
            case VmaBacking.Anonymous a -> 0;
            case VmaBacking.File f -> f.pgoff();
            case VmaBacking.Dax d -> d.pgoff();
            case VmaBacking.PciBar b -> b.offset() >>> PAGE_SHIFT;
        };
    }

    /** {@code linear_page_index}: the file page mapped at {@code vaddr}. */
    long fileIndex(long vaddr) {
        return pgoff() + ((vaddr - start) >>> PAGE_SHIFT);
    }

    boolean writable() {
        return (prot & Prot.PROT_WRITE) != 0;
    }

    boolean readable() {
        return (prot & Prot.PROT_READ) != 0;
    }

    /** The part {@code [s, e)} of this region, with the file offset moved along. */
    Region slice(long s, long e) {
        long shift = (s - start) >>> PAGE_SHIFT;
        VmaBacking b = switch (backing) {
            case VmaBacking.Anonymous a -> a;
            case VmaBacking.File f -> new VmaBacking.File(f.inode(), f.pgoff() + shift, f.shared());
            case VmaBacking.Dax d -> new VmaBacking.Dax(d.inode(), d.pgoff() + shift, d.shared());
            case VmaBacking.PciBar p -> new VmaBacking.PciBar(p.function(), p.bar(), p.offset() + (shift << PAGE_SHIFT));
        };
        return new Region(mm, s, e, prot, b, mayWrite, pfnMap);
    }

    Region withProt(int newProt) {
        return new Region(mm, start, end, newProt, backing, mayWrite, pfnMap);
    }

    /** The byte of the mapped BAR at {@code vaddr}; only for a region with a {@link #pfnMap}. */
    long barOffset(long vaddr) {
        return ((VmaBacking.PciBar) backing).offset() + (vaddr - start);
    }

    /** {@code VM_IO | VM_PFNMAP}: a BAR, no pages of memory. */
    boolean pfnmap() {
        return pfnMap != null;
    }

    @Override
    public boolean sharedMayWrite() {
        return shared() && mayWrite && inode() != null;
    }

    Vma toVma() {
        Set<VmaFlag> flags = shared() ? EnumSet.of(VmaFlag.SHARED) : EnumSet.noneOf(VmaFlag.class);
        if (pfnmap()) {
            flags.add(VmaFlag.IO);
            flags.add(VmaFlag.PFNMAP);
        }
        return new Vma(start, end, prot, flags, backing);
    }

    @Override
    public void unmapFilePages(long firstIndex, long endIndex, boolean evenCows) {
        long pgoff = pgoff();
        long lo = Math.max(firstIndex, pgoff);
        long hi = Math.min(endIndex, pgoff + ((end - start) >>> PAGE_SHIFT));
        if (lo >= hi) {
            return;
        }
        long vs = start + ((lo - pgoff) << PAGE_SHIFT);
        long ve = start + ((hi - pgoff) << PAGE_SHIFT);
        mm.invalidateAndZap(vs, ve, InvalidateReason.CLEAR, evenCows);
    }

    @Override
    public String toString() {
        return toVma().toString();
    }
}
