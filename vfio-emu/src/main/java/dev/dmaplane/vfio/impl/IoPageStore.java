package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IoPageTable;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.PinFlags;
import dev.dmaplane.mm.PinnedPages;

import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * The IOVA to pinned-user-pages store both VFIO front ends share ({@code vfio_iommu}'s {@code dma_list} for type 1,
 * {@code struct io_pagetable} for iommufd): areas of user memory pinned {@code FOLL_LONGTERM}, each mapped at its
 * IOVA into every attached domain, with no two areas overlapping. The policy (alignment, limits, which unmaps are
 * allowed, accounting) is the front end's; this class keeps the areas, the pins and the domains consistent, and
 * leaves nothing half done: an area is pinned and mapped everywhere, or not at all. Not thread-safe: the front end
 * serialises calls under its lock.
 */
final class IoPageStore {
    /** One mapping ({@code struct vfio_dma}, {@code struct iopt_area}): {@code size} bytes at {@code iova}. */
    record Area(long iova, long size, long vaddr, int prot, PinnedPages pages) {
        /** The last IOVA of the area. */
        long last() {
            return iova + size - 1;
        }

        long pageCount() {
            return size / IoPageTable.PAGE_SIZE;
        }
    }

    private final String who;
    private final TreeMap<Long, Area> areas = new TreeMap<>(Long::compareUnsigned);
    private final List<IommuDomain> domains = new ArrayList<>();
    private long pinnedPages;

    IoPageStore(String who) {
        this.who = who;
    }

    /** The areas in IOVA order. */
    List<Area> areas() {
        return List.copyOf(areas.values());
    }

    int count() {
        return areas.size();
    }

    long pinnedPages() {
        return pinnedPages;
    }

    List<IommuDomain> domains() {
        return List.copyOf(domains);
    }

    /** The area holding IOVA {@code iova}, or null ({@code vfio_find_dma(iommu, iova, 1)}). */
    Area areaAt(long iova) {
        Map.Entry<Long, Area> e = areas.floorEntry(iova);
        return e != null && Long.compareUnsigned(iova, e.getValue().last()) <= 0 ? e.getValue() : null;
    }

    /** The areas that intersect {@code [first, last]}, in IOVA order. */
    List<Area> overlapping(long first, long last) {
        List<Area> out = new ArrayList<>();
        Area before = areaAt(first);
        if (before != null) {
            out.add(before);
        }
        for (Area a : areas.tailMap(first, false).values()) {
            if (Long.compareUnsigned(a.iova(), last) > 0) {
                break;
            }
            out.add(a);
        }
        return out;
    }

    /**
     * Pins {@code [vaddr, vaddr + size)} of {@code mm} for the long term and maps it at {@code iova} in every domain.
     *
     * @param prot {@link IoPageTable#PROT_READ} and/or {@link IoPageTable#PROT_WRITE}
     * @throws ErrnoException {@code EEXIST} over an existing area; what the pin answers ({@code EFAULT} for memory
     *                        that is not mapped or not writable for a writable mapping); nothing is kept then
     */
    Area map(AddressSpace mm, long vaddr, long iova, long size, int prot) {
        if (!overlapping(iova, iova + size - 1).isEmpty()) {
            throw new ErrnoException(Errno.EEXIST, String.format("%s: IOVA %#x+%#x overlaps %s", who, iova, size,
                    overlapping(iova, iova + size - 1).getFirst()));
        }
        Set<PinFlags> flags = (prot & IoPageTable.PROT_WRITE) != 0
                ? EnumSet.of(PinFlags.LONGTERM, PinFlags.WRITE) : EnumSet.of(PinFlags.LONGTERM);
        PinnedPages pages = mm.pin(vaddr, size, flags);
        Area a = new Area(iova, size, vaddr, prot, pages);
        List<IommuDomain> done = new ArrayList<>();
        try {
            for (IommuDomain d : domains) {
                mapInto(d, a);
                done.add(d);
            }
        } catch (RuntimeException e) {
            for (IommuDomain d : done) {
                d.unmap(a.iova(), a.size(), who);
            }
            pages.unpin();
            throw e;
        }
        areas.put(iova, a);
        pinnedPages += a.pageCount();
        return a;
    }

    /** Unmaps {@code a} from every domain and unpins it ({@code vfio_remove_dma}); returns its size. */
    long unmap(Area a) {
        if (areas.get(a.iova()) != a) {
            throw new ErrnoException(Errno.ENOENT, who + ": no area at IOVA 0x" + Long.toHexString(a.iova()));
        }
        for (IommuDomain d : domains) {
            d.unmap(a.iova(), a.size(), who);
        }
        areas.remove(a.iova());
        pinnedPages -= a.pageCount();
        if ((a.prot() & IoPageTable.PROT_WRITE) != 0) {
            a.pages().unpinDirty();
        } else {
            a.pages().unpin();
        }
        return a.size();
    }

    /** Unmaps and unpins every area ({@code vfio_iommu_unmap_unpin_all}); returns the bytes. */
    long unmapAll() {
        long bytes = 0;
        for (Area a : areas()) {
            bytes += unmap(a);
        }
        return bytes;
    }

    /**
     * Adds a domain and maps every area into it ({@code vfio_iommu_replay}); on a failure the domain is left as it
     * was found.
     */
    void attach(IommuDomain d) {
        List<Area> done = new ArrayList<>();
        try {
            for (Area a : areas.values()) {
                mapInto(d, a);
                done.add(a);
            }
        } catch (RuntimeException e) {
            for (Area a : done) {
                d.unmap(a.iova(), a.size(), who);
            }
            throw e;
        }
        domains.add(d);
    }

    /** Removes a domain, unmapping every area from it. */
    void detach(IommuDomain d) {
        if (domains.remove(d)) {
            for (Area a : areas.values()) {
                d.unmap(a.iova(), a.size(), who);
            }
        }
    }

    /** Maps an area's pinned pages, each run of physically adjacent pages with one call ({@code iommu_map}). */
    private void mapInto(IommuDomain d, Area a) {
        long[] phys = a.pages().physAddrs();
        int i = 0;
        try {
            while (i < phys.length) {
                int j = i + 1;
                while (j < phys.length && phys[j] == phys[j - 1] + IoPageTable.PAGE_SIZE) {
                    j++;
                }
                d.map(a.iova() + i * IoPageTable.PAGE_SIZE, phys[i], (j - i) * IoPageTable.PAGE_SIZE, a.prot(), who);
                i = j;
            }
        } catch (RuntimeException e) {
            if (i > 0) {
                d.unmap(a.iova(), i * IoPageTable.PAGE_SIZE, who);
            }
            throw e;
        }
    }
}
