package dev.dmaplane.dma.impl;

import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.iommu.IommuGroup;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * A device's address translation cache (the ATC of PCIe Address Translation Services, which Linux turns on with
 * {@code pci_enable_ats}): translated runs of RAM, each valid while the domain, its IOTLB generation and the
 * fabric's routes stay as they were when it was filled, the oldest evicted to make room. Lookups never lock: an
 * entry is immutable and the entry array is replaced whole on a fill.
 */
final class TranslationCache {
    /** Entries the cache holds; the oldest is evicted to make room. */
    static final int ENTRIES = 16;

    /**
     * One entry: the RAM a translated request reached, from the start of its 4 KiB page to the end of the
     * physically contiguous run of leaves that maps it (within one RAM section), valid while the domain, its IOTLB
     * generation (every unmap changes it) and the fabric's routes (every config write changes them) stay as they
     * were when it was filled. It serves the direction whose permission was checked when it was filled.
     */
    record Entry(IommuDomain domain, long iotlbGeneration, long routeEpoch, long iova, long end, boolean write,
                 MemorySegment ram) {
        boolean serves(long addr, boolean write) {
            return addr >= iova && addr < end && write == this.write;
        }
    }

    private final DmaSubsystem sys;
    private final IommuGroup group;
    /** The entry that served or was filled last, looked at first. */
    private volatile Entry last;
    /** Every entry, newest first (replaced whole on a fill, so a reader never sees it half written). */
    private volatile Entry[] entries = new Entry[0];

    TranslationCache(DmaSubsystem sys, IommuGroup group) {
        this.sys = sys;
        this.group = group;
    }

    /** The current entry that serves {@code addr} in the direction {@code write}; null on a miss. */
    Entry lookup(long addr, boolean write) {
        Entry e = last;
        if (e == null || !e.serves(addr, write)) {
            e = null;
            for (Entry x : entries) {
                if (x.serves(addr, write)) {
                    e = x;
                    last = x;
                    break;
                }
            }
        }
        return e == null || !current(e) ? null : e;
    }

    /** The entry that served or was filled last, if it serves {@code write} and is current; else null. */
    Entry last(boolean write) {
        Entry e = last;
        return e == null || e.write != write || !current(e) ? null : e;
    }

    /** Puts {@code e} in the cache, in place of the entries it overlaps and of the oldest if full. */
    void fill(Entry e) {
        Entry[] old = entries;
        Entry[] next = new Entry[Math.min(ENTRIES, old.length + 1)];
        next[0] = e;
        int n = 1;
        for (int i = 0; i < old.length && n < next.length; i++) {
            Entry x = old[i];
            if (current(x) && (x.write != e.write || x.end <= e.iova || x.iova >= e.end)) {
                next[n++] = x;
            }
        }
        entries = n == next.length ? next : Arrays.copyOf(next, n);
        last = e;
    }

    /** Whether {@code e} still holds: same domain, no unmap since (IOTLB generation), no route change (config write). */
    private boolean current(Entry e) {
        IommuDomain d = group == null ? null : group.domain();
        return d == e.domain && d.iotlbGeneration() == e.iotlbGeneration && sys.peerRouter.epoch() == e.routeEpoch;
    }
}
