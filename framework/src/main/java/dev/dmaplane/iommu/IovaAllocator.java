package dev.dmaplane.iommu;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.iommu.impl.FreeIovaTree;
import dev.dmaplane.iommu.impl.IovaRcache;
import dev.dmaplane.iommu.impl.LiveIovaTable;

/**
 * An IOVA domain's address allocator ({@code struct iova_domain} with {@code alloc_iova_fast} / {@code
 * free_iova_fast}): hands out device-visible address ranges top-down below a device's DMA limit.
 *
 * <ul>
 *   <li>Every allocation is size-aligned, as {@code alloc_iova(..., size_aligned=true)}: it starts at a multiple of
 *       {@code roundup_pow_of_two(size in granules)} granules. Sizes below {@link #CACHED_MAX_GRANULES} granules are
 *       first rounded up to a power of two, as {@code iommu_dma_alloc_iova} does, so that they can be cached.</li>
 *   <li>Free space lives in an augmented balanced tree of coalesced ranges ({@link FreeIovaTree}): O(log n) per
 *       allocation and free, and freeing merges neighbours, so churn does not fragment the space.</li>
 *   <li>Freed IOVAs of the cached sizes (up to {@code 2^(IOVA_RANGE_CACHE_MAX_SIZE-1)} granules) go to per-CPU
 *       magazines ({@link IovaRcache}) first; an allocation of such a size tries them before the tree, and only takes
 *       a cached IOVA that lies below its limit. When the tree cannot satisfy a request the caches are flushed back
 *       into it and the request is retried once, so cached IOVAs never cause a spurious {@code ENOMEM}.</li>
 *   <li>Live allocations are tracked with their exact size, so a free that does not match one (wrong address, wrong
 *       size, double free) fails with {@code EINVAL} and changes nothing.</li>
 * </ul>
 *
 * <p>Thread-safe. The cached path takes two short spinlocks, the calling thread's cache slot and one stripe of the
 * live table, each in its own padded array so that threads on different slots share no cache line; the tree is
 * guarded by one monitor, like {@code iova_rbtree_lock}. Lock order: tree, then cache slot, then depot; a live-table
 * stripe is never held together with another lock.
 */
public final class IovaAllocator {
    /** Sizes below this many granules are rounded up to a power of two; sizes up to it are cached. */
    public static final long CACHED_MAX_GRANULES = 1L << (IovaRcache.ORDERS - 1);

    private final long granule;
    private final int shift;
    private final long startPfn;
    private final long endPfn;
    private final FreeIovaTree tree = new FreeIovaTree();
    private final IovaRcache rcache = new IovaRcache();
    private final LiveIovaTable live = new LiveIovaTable();
    /** Where cache flushes go while the tree monitor is already held. */
    private final IovaRcache.FrameSink toTreeLocked = this::releaseLocked;
    /** Where a magazine evicted from a full cache goes. */
    private final IovaRcache.FrameSink toTree = this::releaseToTree;

    /**
     * Creates a domain covering {@code [startAddr, endAddrExclusive)} ({@code init_iova_domain}).
     *
     * @param granule          the IOMMU page size: a power of two no larger than the CPU page size (4096), as
     *                         {@code init_iova_domain} requires
     * @param startAddr        first usable IOVA, granule-aligned and above 0 so that IOVA 0 is never handed out
     * @param endAddrExclusive first IOVA past the domain, granule-aligned and above {@code startAddr}
     * @throws ErrnoException {@code EINVAL} naming the offending value
     */
    public IovaAllocator(long granule, long startAddr, long endAddrExclusive) {
        if (granule <= 0 || granule > HostMemory.PAGE_SIZE || Long.bitCount(granule) != 1) {
            throw new ErrnoException(Errno.EINVAL, "IOVA granule must be a power of two no larger than the "
                    + HostMemory.PAGE_SIZE + "-byte CPU page (init_iova_domain), not " + granule);
        }
        if (startAddr <= 0 || (startAddr & (granule - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, "IOVA domain start must be > 0 and aligned to granule "
                    + granule + ", not 0x" + Long.toHexString(startAddr));
        }
        if (endAddrExclusive <= startAddr || (endAddrExclusive & (granule - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, "IOVA domain end must be above start 0x" + Long.toHexString(startAddr)
                    + " and aligned to granule " + granule + ", not 0x" + Long.toHexString(endAddrExclusive));
        }
        this.granule = granule;
        this.shift = Long.numberOfTrailingZeros(granule);
        this.startPfn = startAddr >>> shift;
        this.endPfn = endAddrExclusive >>> shift;
        tree.addRange(startPfn, endPfn);
    }

    /** The IOMMU page size this domain allocates in. */
    public long granule() {
        return granule;
    }

    /**
     * Allocates {@code size} bytes of IOVA space below {@code limitAddr}, top-down and size-aligned.
     *
     * @param size      bytes, above 0; rounded up to whole granules (and to a power of two below
     *                  {@link #CACHED_MAX_GRANULES} granules)
     * @param limitAddr exclusive upper bound for the end of the range, e.g. {@code 1L << 32} for a 32-bit DMA mask;
     *                  rounded down to a granule, and clamped to the domain's end
     * @return the IOVA of the first byte
     * @throws ErrnoException {@code EINVAL} for a size or limit that is not positive; {@code ENOMEM} when no suitably
     *                        aligned range is free below the limit (nothing is changed)
     */
    public long alloc(long size, long limitAddr) {
        long frames = frames(size);
        if (limitAddr <= 0) {
            throw new ErrnoException(Errno.EINVAL, "IOVA limit must be > 0, not 0x" + Long.toHexString(limitAddr));
        }
        long limitPfn = Math.min(limitAddr >>> shift, endPfn);
        long pfn = 0;
        if (frames <= CACHED_MAX_GRANULES) {
            pfn = rcache.get(Long.numberOfTrailingZeros(frames), limitPfn - frames);
        }
        if (pfn == 0) {
            pfn = allocFromTree(size, frames, limitPfn);
        }
        live.add(pfn, size, frames << shift);
        return pfn << shift;
    }

    private long allocFromTree(long size, long frames, long limitPfn) {
        synchronized (tree) {
            long pfn = frames <= endPfn - startPfn ? tree.allocSizeAligned(frames, limitPfn) : -1;
            if (pfn < 0) {
                rcache.drainAll(toTreeLocked);
                pfn = frames <= endPfn - startPfn ? tree.allocSizeAligned(frames, limitPfn) : -1;
            }
            if (pfn < 0) {
                throw new ErrnoException(Errno.ENOMEM, "no size-aligned IOVA range of " + size + " bytes ("
                        + frames + " granules) free below limit 0x" + Long.toHexString(limitPfn << shift));
            }
            return pfn;
        }
    }

    /**
     * Frees an allocation ({@code free_iova_fast}).
     *
     * @param iova the address {@link #alloc} returned
     * @param size the size that was passed to {@link #alloc}
     * @throws ErrnoException {@code EINVAL} naming the address when no live allocation starts there with exactly that
     *                        size (never allocated, already freed, or freed with another size); nothing is changed
     */
    public void free(long iova, long size) {
        if (iova <= 0 || (iova & (granule - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, "IOVA 0x" + Long.toHexString(iova)
                    + " is not a granule-aligned address this domain could have allocated");
        }
        if (size <= 0) {
            throw new ErrnoException(Errno.EINVAL, "free of IOVA 0x" + Long.toHexString(iova)
                    + " with size " + size + ": size must be > 0");
        }
        long frames = frames(size);
        long pfn = iova >>> shift;
        long found = live.remove(pfn, size, frames << shift);
        if (found != size) {
            throw new ErrnoException(Errno.EINVAL, found == LiveIovaTable.ABSENT
                    ? "IOVA 0x" + Long.toHexString(iova) + " is not allocated (never allocated or already freed)"
                    : "IOVA 0x" + Long.toHexString(iova) + " was allocated with " + found + " bytes, not " + size);
        }
        if (frames <= CACHED_MAX_GRANULES) {
            rcache.put(Long.numberOfTrailingZeros(frames), pfn, toTree);
        } else {
            releaseToTree(pfn, frames);
        }
    }

    /**
     * Takes {@code [start, endExclusive)}, widened to whole granules, out of the free space for good
     * ({@code reserve_iova}), as the DMA layer does at domain set-up for addresses the PCI fabric would route
     * elsewhere ({@code iova_reserve_pci_windows}). Cached free IOVAs are returned to the tree first so none of
     * them is handed out inside the range later; live allocations there are left alone.
     *
     * @return the bytes that were free and are now reserved
     * @throws ErrnoException {@code EINVAL} for an empty or negative range
     */
    public long reserve(long start, long endExclusive) {
        if (start < 0 || endExclusive <= start) {
            throw new ErrnoException(Errno.EINVAL, "IOVA reservation 0x" + Long.toHexString(start) + "-0x"
                    + Long.toHexString(endExclusive) + " is empty or negative");
        }
        long lo = Math.max(start >>> shift, startPfn);
        long hi = Math.min((endExclusive + granule - 1) >>> shift, endPfn);
        if (lo >= hi) {
            return 0;
        }
        synchronized (tree) {
            rcache.drainAll(toTreeLocked);
            return tree.reserve(lo, hi) << shift;
        }
    }

    private void releaseToTree(long pfn, long frames) {
        synchronized (tree) {
            releaseLocked(pfn, frames);
        }
    }

    private void releaseLocked(long pfn, long frames) {
        tree.release(pfn, frames);
    }

    /**
     * Granules a request of {@code size} bytes occupies: rounded up to whole granules, then to a power of two when
     * below the cached maximum.
     */
    private long frames(long size) {
        if (size <= 0) {
            throw new ErrnoException(Errno.EINVAL, "IOVA allocation size must be > 0, not " + size);
        }
        long frames = ((size - 1) >>> shift) + 1;
        return frames < CACHED_MAX_GRANULES ? FreeIovaTree.roundUpPow2(frames) : frames;
    }

    /** Bytes of IOVA space held by live allocations, after rounding; exact while no other thread allocates or frees. */
    public long allocatedBytes() {
        return live.bytes();
    }

    /** Number of live allocations; exact while no other thread allocates or frees. */
    public long liveAllocations() {
        return live.count();
    }

    @Override
    public String toString() {
        return "IovaAllocator[0x" + Long.toHexString(startPfn << shift) + "-0x" + Long.toHexString(endPfn << shift)
                + ", granule " + granule + "]";
    }
}
