package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IoPageTable;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.vfio.VfioLayouts;
import dev.dmaplane.vfio.uapi.CapChain;
import dev.dmaplane.vfio.uapi.IoctlTable;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.vfio.VfioUapi.*;

/**
 * The type 1 IOMMU driver, v2 semantics ({@code struct vfio_iommu} of {@code drivers/vfio/vfio_iommu_type1.c}): one
 * UNMANAGED domain all the container's groups attach to, and the DMA mappings of {@link IoPageStore}, checked and
 * counted as the kernel does ({@code dma_avail}, {@code RLIMIT_MEMLOCK} through {@code vfio_lock_acct}). Thread-safe:
 * every operation holds this object's lock ({@code iommu->lock}).
 */
final class Type1Iommu {
    /** The only page size the domain maps with: 4 KiB, so every size, IOVA and vaddr is a multiple of it. */
    static final long PGSIZE = IoPageTable.PAGE_SIZE;
    /** {@code iova_pgsizes}: the domain's {@code pgsize_bitmap}, 4 KiB and 2 MiB leaves. */
    static final long PGSIZE_BITMAP = IoPageTable.PAGE_SIZE | IoPageTable.BLOCK_SIZE;
    /**
     * The x86 interrupt range ({@code IOMMU_RESV_MSI}, {@code 0xfee00000}-{@code 0xfeefffff}) that every group reports
     * as reserved ({@code iommu_get_group_resv_regions}), cut out of the usable IOVA ranges.
     */
    static final long MSI_START = ResvRegions.MSI_START;
    static final long MSI_END = ResvRegions.MSI_END;

    private final UserImpl user;
    private final IoPageStore store;
    private final IoctlTable table;
    private final List<GroupState> groups = new ArrayList<>();
    private IommuDomain domain;
    private int dmaAvail;

    Type1Iommu(UserImpl user, int dmaEntryLimit) {
        this.user = user;
        this.store = new IoPageStore("vfio type1 of " + user.mm().name());
        this.dmaAvail = dmaEntryLimit;
        this.table = IoctlTable.enotty("vfio type1 iommu")
                .struct(VFIO_IOMMU_GET_INFO, "VFIO_IOMMU_GET_INFO", VfioLayouts.IOMMU_TYPE1_INFO_MINSZ, -1,
                        Errno.EINVAL, (arg, v) -> info(arg))
                .struct(VFIO_IOMMU_MAP_DMA, "VFIO_IOMMU_MAP_DMA", VfioLayouts.DMA_MAP_MINSZ,
                        VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, Errno.EINVAL, (arg, v) -> mapDma(arg))
                .struct(VFIO_IOMMU_UNMAP_DMA, "VFIO_IOMMU_UNMAP_DMA", VfioLayouts.DMA_UNMAP_MINSZ,
                        VFIO_DMA_UNMAP_FLAG_ALL, Errno.EINVAL, (arg, v) -> unmapDma(arg));
    }

    IoctlTable table() {
        return table;
    }

    /** {@code vfio_iommu_type1_check_extension} with an IOMMU set. */
    static long checkExtension(long ext) {
        return ext == VFIO_TYPE1v2_IOMMU || ext == VFIO_UNMAP_ALL || ext == VFIO_DMA_CC_IOMMU ? 1 : 0;
    }

    /**
     * {@code vfio_iommu_type1_attach_group}: the group attaches to the container's domain (allocated with the
     * first group), which already holds every mapping.
     */
    synchronized void attachGroup(GroupState g, Object owner) {
        boolean fresh = domain == null;
        if (fresh) {
            domain = user.core().machine().iommu().allocDomain(IommuDomainType.UNMANAGED);
            store.attach(domain);
        }
        try {
            g.iommuGroup().attach(owner, domain);
        } catch (RuntimeException e) {
            if (fresh) {
                freeDomain();
            }
            throw e;
        }
        groups.add(g);
    }

    /**
     * {@code vfio_iommu_type1_detach_group}: the group blocks DMA again; with the last group the domain goes and
     * every mapping is unmapped and unpinned ({@code vfio_iommu_unmap_unpin_all}).
     */
    synchronized void detachGroup(GroupState g, Object owner) {
        if (!groups.remove(g)) {
            return;
        }
        g.iommuGroup().detach(owner);
        if (groups.isEmpty()) {
            long pages = store.pinnedPages();
            long bytes = store.unmapAll();
            account(-bytes, -pages);
            freeDomain();
        }
    }

    private void freeDomain() {
        store.detach(domain);
        user.core().machine().iommu().freeDomain(domain);
        domain = null;
    }

    /**
     * {@code vfio_iommu_type1_get_info}: {@code PGSIZES | CAPS}, the page sizes, and the capability chain
     * ({@code DMA_AVAIL}, then {@code IOVA_RANGE}); a buffer too small for the chain gets the {@code argsz} it
     * needs and no chain.
     */
    private long info(MemorySegment arg) {
        long argsz = Integer.toUnsignedLong(arg.get(VfioLayouts.U32, 0));
        CapChain caps = new CapChain();
        MemorySegment avail = caps.add(VfioLayouts.CAP_DMA_AVAIL.byteSize(), VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1);
        synchronized (this) {
            VfioLayouts.setU32(avail, VfioLayouts.CAP_DMA_AVAIL, "avail", dmaAvail);
        }
        List<long[]> ranges = iovaRanges();
        MemorySegment r = caps.add(VfioLayouts.CAP_IOVA_RANGE.byteSize() + ranges.size() * VfioLayouts.IOVA_RANGE.byteSize(),
                VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1);
        VfioLayouts.setU32(r, VfioLayouts.CAP_IOVA_RANGE, "nr_iovas", ranges.size());
        for (int i = 0; i < ranges.size(); i++) {
            long at = VfioLayouts.CAP_IOVA_RANGE.byteSize() + i * VfioLayouts.IOVA_RANGE.byteSize();
            r.set(VfioLayouts.U64, at, ranges.get(i)[0]);
            r.set(VfioLayouts.U64, at + 8, ranges.get(i)[1]);
        }
        long size = VfioLayouts.IOMMU_TYPE1_INFO.byteSize();
        int flags = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
        int capOffset = caps.copyOut(arg, size, argsz);
        long minsz = Math.min(argsz, size);
        MemorySegment out = arg.asSlice(0, minsz);
        out.set(VfioLayouts.U32, 0, capOffset == 0 ? (int) (size + caps.size()) : (int) argsz);
        out.set(VfioLayouts.U32, 4, flags);
        out.set(VfioLayouts.U64, 8, PGSIZE_BITMAP);
        if (minsz >= 20) {
            out.set(VfioLayouts.U32, 16, capOffset);
        }
        return 0;
    }

    /** The usable IOVA ranges ({@code iommu->iova_list}): the 48-bit aperture without the MSI window, inclusive. */
    static List<long[]> iovaRanges() {
        return List.of(new long[]{0, MSI_START - 1}, new long[]{MSI_END + 1, IommuDomain.APERTURE_END - 1});
    }

    private static boolean iovaValid(long first, long last) {
        for (long[] r : iovaRanges()) {
            if (Long.compareUnsigned(first, r[0]) >= 0 && Long.compareUnsigned(last, r[1]) <= 0) {
                return true;
            }
        }
        return false;
    }

    /**
     * {@code vfio_dma_do_map} in the kernel's order: no READ or WRITE ({@code EINVAL}); size 0 or a size, IOVA or
     * vaddr off the page size ({@code EINVAL}); an IOVA or vaddr range that wraps ({@code EINVAL}); an overlap
     * ({@code EEXIST}); no {@code dma_avail} left ({@code ENOSPC}); an IOVA outside the usable ranges
     * ({@code EINVAL}); over {@code RLIMIT_MEMLOCK} ({@code ENOMEM}); then the pin's own errors.
     */
    private long mapDma(MemorySegment arg) {
        int flags = VfioLayouts.u32(arg, VfioLayouts.DMA_MAP, "flags");
        long vaddr = VfioLayouts.u64(arg, VfioLayouts.DMA_MAP, "vaddr");
        long iova = VfioLayouts.u64(arg, VfioLayouts.DMA_MAP, "iova");
        long size = VfioLayouts.u64(arg, VfioLayouts.DMA_MAP, "size");
        int prot = ((flags & VFIO_DMA_MAP_FLAG_READ) != 0 ? IoPageTable.PROT_READ : 0)
                | ((flags & VFIO_DMA_MAP_FLAG_WRITE) != 0 ? IoPageTable.PROT_WRITE : 0);
        String what = String.format("VFIO_IOMMU_MAP_DMA vaddr %#x iova %#x size %#x", vaddr, iova, size);
        if (prot == 0) {
            throw new ErrnoException(Errno.EINVAL, what + ": neither READ nor WRITE");
        }
        if (size == 0 || ((size | iova | vaddr) & (PGSIZE - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, what + ": empty, or not aligned to the page size 0x1000");
        }
        if (Long.compareUnsigned(iova + size - 1, iova) < 0 || Long.compareUnsigned(vaddr + size - 1, vaddr) < 0) {
            throw new ErrnoException(Errno.EINVAL, what + ": the IOVA or virtual range wraps around");
        }
        synchronized (this) {
            if (!store.overlapping(iova, iova + size - 1).isEmpty()) {
                throw new ErrnoException(Errno.EEXIST, what + ": overlaps " + store.overlapping(iova, iova + size - 1).getFirst());
            }
            if (dmaAvail == 0) {
                throw new ErrnoException(Errno.ENOSPC, what + ": dma_entry_limit reached, no dma_avail left");
            }
            if (!iovaValid(iova, iova + size - 1)) {
                throw new ErrnoException(Errno.EINVAL, what + ": outside the usable IOVA ranges (aperture 48 bits, "
                        + "MSI window 0xfee00000-0xfeefffff reserved)");
            }
            user.lockAcct(size);
            IoPageStore.Area a;
            try {
                a = store.map(user.mm(), vaddr, iova, size, prot);
            } catch (RuntimeException e) {
                user.lockAcct(-size);
                throw e;
            }
            dmaAvail--;
            user.core().pinned(a.pageCount());
        }
        return 0;
    }

    /**
     * {@code vfio_dma_do_unmap}, v2: an IOVA off the page size, {@code UNMAP_FLAG_ALL} with an IOVA or size, a size
     * of 0, off the page size or wrapping, or a range that would split a mapping: {@code EINVAL}. Every mapping in
     * the range goes; the bytes unmapped are written back into {@code size}.
     */
    private long unmapDma(MemorySegment arg) {
        int flags = VfioLayouts.u32(arg, VfioLayouts.DMA_UNMAP, "flags");
        long iova = VfioLayouts.u64(arg, VfioLayouts.DMA_UNMAP, "iova");
        long size = VfioLayouts.u64(arg, VfioLayouts.DMA_UNMAP, "size");
        boolean all = (flags & VFIO_DMA_UNMAP_FLAG_ALL) != 0;
        String what = String.format("VFIO_IOMMU_UNMAP_DMA iova %#x size %#x", iova, size);
        if ((iova & (PGSIZE - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, what + ": IOVA not aligned to the page size");
        }
        long last;
        if (all) {
            if (iova != 0 || size != 0) {
                throw new ErrnoException(Errno.EINVAL, what + ": UNMAP_FLAG_ALL takes neither IOVA nor size");
            }
            last = -1L;
        } else {
            if (size == 0 || (size & (PGSIZE - 1)) != 0 || Long.compareUnsigned(iova + size - 1, iova) < 0) {
                throw new ErrnoException(Errno.EINVAL, what + ": empty, not a multiple of the page size, or wrapping");
            }
            last = iova + size - 1;
        }
        long unmapped = 0;
        synchronized (this) {
            if (!all) {
                IoPageStore.Area first = store.areaAt(iova);
                if (first != null && first.iova() != iova) {
                    throw new ErrnoException(Errno.EINVAL, what + ": would split " + first + " (v2 unmaps whole mappings)");
                }
                IoPageStore.Area end = store.areaAt(last);
                if (end != null && end.last() != last) {
                    throw new ErrnoException(Errno.EINVAL, what + ": would split " + end + " (v2 unmaps whole mappings)");
                }
            }
            for (IoPageStore.Area a : store.overlapping(iova, last)) {
                unmapped += store.unmap(a);
                dmaAvail++;
                account(-a.size(), -a.pageCount());
            }
        }
        VfioLayouts.setU64(arg, VfioLayouts.DMA_UNMAP, "size", unmapped);
        return 0;
    }

    private void account(long bytes, long pages) {
        user.lockAcct(bytes);
        user.core().pinned(pages);
    }
}
