package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IoPageTable;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.PinFlags;
import dev.dmaplane.mm.PinnedPages;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * The IOVA to pinned-pages store both VFIO front ends share ({@code vfio_iommu}'s {@code dma_list} for type 1,
 * {@code struct io_pagetable} for iommufd): areas of pinned pages ({@link Pages}, user memory pinned
 * {@code FOLL_LONGTERM} or file pages), each mapped at its IOVA into every attached domain, with no two areas
 * overlapping. The policy (alignment, reserved ranges, limits, which unmaps are allowed, accounting) is the front
 * end's; this class keeps the areas, the pins and the domains consistent, and leaves nothing half done: an area is
 * mapped everywhere, or not at all. Not thread-safe: the front end serialises calls under its lock.
 */
public final class IoPageStore {
    /**
     * Pinned pages areas map ({@code struct iopt_pages}): shared by the areas {@code IOMMU_IOAS_COPY} makes from one
     * mapping, so they are pinned once; the last area's unmap releases them (marking them dirty when a device may
     * have written them). Pages of a dma-buf can be revoked ({@link #revoke}, iommufd's {@code iopt_revoke_notify}):
     * every domain mapping of them goes at once and none is made again, while the areas stay until the user unmaps
     * them. Each domain mapping is recorded here, under this object's lock, so a revoke and the store's own maps and
     * unmaps never miss one another. Thread-safe.
     */
    public static final class Pages {
        /** How pinned pages are let go: {@code dirty} when a device could write them. */
        @FunctionalInterface
        public interface Release {
            void release(boolean dirty);
        }

        /** One area's range in one domain ({@code iopt_area_fill_domain} done). */
        private record DomainRange(IommuDomain domain, long iova, long size) {
        }

        private final long[] phys;
        private final boolean writable;
        private final boolean cpuReachable;
        private final Release release;
        private int users = 1;
        /** Guarded by this. */
        private final List<DomainRange> mapped = new ArrayList<>();
        /** Guarded by this. */
        private String revoked;

        /** Pages of host RAM at {@code phys} with one user; {@code release} runs when the last user puts them. */
        public Pages(long[] phys, boolean writable, Release release) {
            this(phys, writable, true, release);
        }

        /**
         * Pages at {@code phys} with one user; {@code cpuReachable} false for memory that has no {@code struct page}
         * an in-kernel user could pin or copy through (a dma-buf's: {@code iopt_is_dmabuf}).
         */
        public Pages(long[] phys, boolean writable, boolean cpuReachable, Release release) {
            this.phys = phys.clone();
            this.writable = writable;
            this.cpuReachable = cpuReachable;
            this.release = release;
        }

        /**
         * {@code pin_user_pages(FOLL_LONGTERM)} of {@code [vaddr, vaddr + size)} of {@code mm}, writable when
         * {@code write}.
         *
         * @throws ErrnoException what the pin answers ({@code EFAULT} for memory not mapped, or not writable for
         *                        {@code write}); nothing is pinned then
         */
        public static Pages pin(AddressSpace mm, long vaddr, long size, boolean write) {
            Set<PinFlags> flags = write ? EnumSet.of(PinFlags.LONGTERM, PinFlags.WRITE) : EnumSet.of(PinFlags.LONGTERM);
            PinnedPages p = mm.pin(vaddr, size, flags);
            return new Pages(p.physAddrs(), write, dirty -> {
                if (dirty) {
                    p.unpinDirty();
                } else {
                    p.unpin();
                }
            });
        }

        /**
         * These pages, not yet shared, with {@code after} run once they are released (the accounting undone).
         *
         * @throws ErrnoException {@code EBUSY} once shared
         */
        public synchronized Pages then(Runnable after) {
            if (users != 1) {
                throw new ErrnoException(Errno.EBUSY, this + " are shared already");
            }
            Release first = release;
            return new Pages(phys, writable, cpuReachable, dirty -> {
                first.release(dirty);
                after.run();
            });
        }

        public int pageCount() {
            return phys.length;
        }

        /** The physical address of page {@code index}. */
        public long phys(int index) {
            return phys[index];
        }

        /** Whether in-kernel users may pin or copy through the pages ({@code iommufd_access}): not a dma-buf's. */
        public boolean cpuReachable() {
            return cpuReachable;
        }

        /** Whether the pages may be mapped for device writes ({@code pages->writable}). */
        public boolean writable() {
            return writable;
        }

        /**
         * Revokes the pages ({@code iopt_revoke_notify}, the importer's {@code move_notify} of a dma-buf): every
         * domain mapping of them is removed at once, so a device's later access is an IOMMU fault, and none is made
         * again; the areas and the user's reference stay. Idempotent.
         */
        public synchronized void revoke(String why, String who) {
            if (revoked != null) {
                return;
            }
            revoked = why;
            for (DomainRange r : mapped) {
                r.domain().unmap(r.iova(), r.size(), who);
            }
            mapped.clear();
        }

        /**
         * Maps an area into {@code d} unless revoked ({@code iopt_area_fill_domain}), each run of physically adjacent
         * pages with one {@code iommu_map}.
         */
        private synchronized void mapRuns(IommuDomain d, Area a, String who) {
            if (revoked != null) {
                return;
            }
            long[] frames = new long[(int) a.pageCount()];
            Arrays.setAll(frames, n -> phys[a.firstPage() + n]);
            int i = 0;
            try {
                while (i < frames.length) {
                    int j = i + 1;
                    while (j < frames.length && frames[j] == frames[j - 1] + IoPageTable.PAGE_SIZE) {
                        j++;
                    }
                    d.map(a.iova() + i * IoPageTable.PAGE_SIZE, frames[i], (j - i) * IoPageTable.PAGE_SIZE, a.prot(),
                            who);
                    i = j;
                }
            } catch (RuntimeException e) {
                if (i > 0) {
                    d.unmap(a.iova(), i * IoPageTable.PAGE_SIZE, who);
                }
                throw e;
            }
            mapped.add(new DomainRange(d, a.iova(), a.size()));
        }

        /** Unmaps an area from {@code d} if it is mapped there ({@code iopt_area_unfill_domain}). */
        private synchronized void unmapRuns(IommuDomain d, Area a, String who) {
            if (mapped.remove(new DomainRange(d, a.iova(), a.size()))) {
                d.unmap(a.iova(), a.size(), who);
            }
        }

        /** Another user ({@code kref_get}). */
        public synchronized Pages get() {
            if (users == 0) {
                throw new ErrnoException(Errno.ENOENT, "pages " + this + " were released");
            }
            users++;
            return this;
        }

        /** Drops a user; the last runs the release. Returns whether it did. */
        public boolean put(boolean dirty) {
            synchronized (this) {
                if (--users > 0) {
                    return false;
                }
            }
            release.release(dirty);
            return true;
        }

        @Override
        public String toString() {
            return phys.length + " pinned pages" + (phys.length == 0 ? "" : " from phys 0x" + Long.toHexString(phys[0]));
        }
    }

    /**
     * One mapping ({@code struct vfio_dma}, {@code struct iopt_area}): {@code size} bytes at {@code iova}, pages
     * {@code firstPage} on of {@code pages}.
     */
    public record Area(long iova, long size, long vaddr, int prot, Pages pages, int firstPage) {
        /** The last IOVA of the area. */
        public long last() {
            return iova + size - 1;
        }

        public long pageCount() {
            return size / IoPageTable.PAGE_SIZE;
        }

        /** The pages of host RAM the area holds pinned: all of them, or none for a dma-buf's MMIO. */
        long pinnedPageCount() {
            return pages.cpuReachable() ? pageCount() : 0;
        }

        @Override
        public String toString() {
            return String.format("area 0x%x-0x%x", iova, last());
        }
    }

    private final String who;
    private final TreeMap<Long, Area> areas = new TreeMap<>(Long::compareUnsigned);
    private final List<IommuDomain> domains = new ArrayList<>();
    /** Pages of host RAM the areas hold; a dma-buf's pages are no RAM and were not pinned. */
    private long pinnedPages;

    public IoPageStore(String who) {
        this.who = who;
    }

    /** The areas in IOVA order. */
    public List<Area> areas() {
        return List.copyOf(areas.values());
    }

    public int count() {
        return areas.size();
    }

    /** Pages of host RAM the areas hold pinned: an area of a dma-buf's MMIO counts none ({@code iopt_is_dmabuf}). */
    public long pinnedPages() {
        return pinnedPages;
    }

    public List<IommuDomain> domains() {
        return List.copyOf(domains);
    }

    /** The area holding IOVA {@code iova}, or null ({@code vfio_find_dma(iommu, iova, 1)}). */
    public Area areaAt(long iova) {
        Map.Entry<Long, Area> e = areas.floorEntry(iova);
        return e != null && Long.compareUnsigned(iova, e.getValue().last()) <= 0 ? e.getValue() : null;
    }

    /** The areas that intersect {@code [first, last]}, in IOVA order. */
    public List<Area> overlapping(long first, long last) {
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
    public Area map(AddressSpace mm, long vaddr, long iova, long size, int prot) {
        requireFree(iova, size);
        Pages pages = Pages.pin(mm, vaddr, size, (prot & IoPageTable.PROT_WRITE) != 0);
        try {
            return map(pages, 0, iova, size, vaddr, prot);
        } catch (RuntimeException e) {
            pages.put(false);
            throw e;
        }
    }

    /**
     * Maps {@code size} bytes of {@code pages} from page {@code firstPage} at {@code iova} in every domain
     * ({@code iopt_map_pages}); the area takes over the caller's reference to {@code pages}, which stays the
     * caller's on a failure.
     *
     * @throws ErrnoException {@code EEXIST} over an existing area, {@code EPERM} for a writable area of pages that
     *                        are not, {@code EINVAL} past the pages; nothing is kept then
     */
    public Area map(Pages pages, int firstPage, long iova, long size, long vaddr, int prot) {
        requireFree(iova, size);
        if ((prot & IoPageTable.PROT_WRITE) != 0 && !pages.writable()) {
            throw new ErrnoException(Errno.EPERM, who + ": a device-writable mapping of " + pages
                    + " pinned read-only");
        }
        if (firstPage < 0 || firstPage + size / IoPageTable.PAGE_SIZE > pages.pageCount()) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: %#x bytes from page %d past %s", who, size,
                    firstPage, pages));
        }
        Area a = new Area(iova, size, vaddr, prot, pages, firstPage);
        List<IommuDomain> done = new ArrayList<>();
        try {
            for (IommuDomain d : domains) {
                mapInto(d, a);
                done.add(d);
            }
        } catch (RuntimeException e) {
            for (IommuDomain d : done) {
                unmapFrom(d, a);
            }
            throw e;
        }
        areas.put(iova, a);
        pinnedPages += a.pinnedPageCount();
        return a;
    }

    private void requireFree(long iova, long size) {
        List<Area> over = overlapping(iova, iova + size - 1);
        if (!over.isEmpty()) {
            throw new ErrnoException(Errno.EEXIST, String.format("%s: IOVA %#x+%#x overlaps %s", who, iova, size,
                    over.getFirst()));
        }
    }

    /** Unmaps {@code a} from every domain and unpins it ({@code vfio_remove_dma}); returns its size. */
    public long unmap(Area a) {
        if (areas.get(a.iova()) != a) {
            throw new ErrnoException(Errno.ENOENT, who + ": no area at IOVA 0x" + Long.toHexString(a.iova()));
        }
        for (IommuDomain d : domains) {
            unmapFrom(d, a);
        }
        areas.remove(a.iova());
        pinnedPages -= a.pinnedPageCount();
        a.pages().put((a.prot() & IoPageTable.PROT_WRITE) != 0);
        return a.size();
    }

    /** Unmaps and unpins every area ({@code vfio_iommu_unmap_unpin_all}); returns the bytes. */
    public long unmapAll() {
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
    public void attach(IommuDomain d) {
        List<Area> done = new ArrayList<>();
        try {
            for (Area a : areas.values()) {
                mapInto(d, a);
                done.add(a);
            }
        } catch (RuntimeException e) {
            for (Area a : done) {
                unmapFrom(d, a);
            }
            throw e;
        }
        domains.add(d);
    }

    /** Removes a domain, unmapping every area from it. */
    public void detach(IommuDomain d) {
        if (domains.remove(d)) {
            for (Area a : areas.values()) {
                unmapFrom(d, a);
            }
        }
    }

    /** Maps an area's pinned pages, each run of physically adjacent pages with one call ({@code iommu_map}). */
    private void mapInto(IommuDomain d, Area a) {
        a.pages().mapRuns(d, a, who);
    }

    private void unmapFrom(IommuDomain d, Area a) {
        a.pages().unmapRuns(d, a, who);
    }
}
