package dev.dmaplane.rdma.impl;

import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dma.SgAppendTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.IntervalNotifier;
import dev.dmaplane.mm.IntervalSubscription;
import dev.dmaplane.mm.InvalidateReason;
import dev.dmaplane.mm.MmuRange;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.NavigableMap;
import java.util.TreeMap;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * {@code ib_umem_odp} ({@code drivers/infiniband/core/umem_odp.c}): nothing is pinned. The range is watched by an
 * interval notifier; when the HCA touches it, {@link #makePresent} faults the pages in ({@code hmm_range_fault})
 * and maps each one through the DMA API, following the {@code mmu_interval_read_begin}/{@code read_retry}
 * protocol under the region's lock (the kernel's {@code umem_mutex}). An invalidation (munmap, migration,
 * mprotect, exit) takes the region's write lock, so it waits for accesses in progress, then unmaps the pages of
 * the range; the next access faults them in again, or fails when they are gone.
 *
 * <p>Like {@code ib_umem_odp}'s {@code pfn_list} and {@code dma_list} filled by {@code hmm_range_fault}, what it
 * keeps per page exists only for pages faulted in and mapped: a map from page index to {@link OdpPage}, so a region
 * of {@code max_mr_size} costs nothing until the HCA touches it, and only what it touched.
 */
final class OdpUserMemory extends UserMemory implements IntervalNotifier {
    private static final Logger LOG = LoggerFactory.getLogger(OdpUserMemory.class);
    private static final long PAGE = HostMemory.PAGE_SIZE;

    /** A page faulted in and mapped: its frame, its DMA address, and whether it was faulted for writing. */
    private record OdpPage(long phys, long dma, boolean forWrite) {
    }

    private final AddressSpace mm;
    private final DmaApi dma;
    private final MrImpl mr;
    /** The first page's address and the end of the last page. */
    private final long start;
    private final long end;
    /** Present pages by index from {@link #start}; guarded by this. */
    private final NavigableMap<Long, OdpPage> present = new TreeMap<>();
    private IntervalSubscription sub;

    private OdpUserMemory(long addr, long length, long iova, AddressSpace mm, DmaApi dma, MrImpl mr) {
        super(addr, length, iova);
        this.mm = mm;
        this.dma = dma;
        this.mr = mr;
        this.start = addr & -PAGE;
        this.end = (addr + length + PAGE - 1) & -PAGE;
    }

    /** {@code ib_umem_odp_get}: sets up the mirror and inserts its interval notifier. */
    static OdpUserMemory get(AddressSpace mm, DmaApi dma, long addr, long length, long iova, MrImpl mr) {
        OdpUserMemory o = new OdpUserMemory(addr, length, iova, mm, dma, mr);
        o.sub = mm.registerNotifier(o.start, o.end - o.start, o);
        return o;
    }

    @Override
    boolean onDemand() {
        return true;
    }

    @Override
    long pageSize() {
        return PAGE;
    }

    @Override
    long[] dmaBlocks() {
        return new long[0];
    }

    @Override
    long pinnedPages() {
        return 0;
    }

    @Override
    synchronized int dmaMappings() {
        return present.size();
    }

    /** The index from {@link #start} of the page holding byte {@code offset} of the region. */
    private long pageOf(long offset) {
        return (addr + offset - start) >>> HostMemory.PAGE_SHIFT;
    }

    /**
     * Makes the pages of {@code [offset, offset+len)} present and mapped ({@code ib_umem_odp_map_dma_and_lock})
     * and returns with {@code rw}'s read lock held, the pages guaranteed until it is released.
     *
     * @param check run under the read lock before the pages are used; throws to refuse
     * @throws ErrnoException {@code EFAULT} for a span not inside the region, {@code EINVAL} for an empty one
     *                        (nothing is faulted in then), else as {@link AddressSpace#faultRange} refuses (no lock
     *                        held then)
     */
    void makePresent(long offset, long len, boolean write, ReentrantReadWriteLock rw, Runnable check) {
        checkSpan(offset, len);
        if (len == 0) {
            throw new ErrnoException(Errno.EINVAL, "on-demand fault of 0 bytes at offset 0x" + Long.toHexString(offset)
                    + ": nothing to make present");
        }
        long first = pageOf(offset);
        long last = pageOf(offset + len - 1);
        long va = start + (first << HostMemory.PAGE_SHIFT);
        long span = (last - first + 1) << HostMemory.PAGE_SHIFT;
        while (true) {
            long seq = sub.readBegin();
            long[] p = mm.faultRange(va, span, write);
            rw.readLock().lock();
            boolean keep = false;
            try {
                check.run();
                if (sub.readRetry(seq)) {
                    continue;
                }
                synchronized (this) {
                    for (long i = first; i <= last; i++) {
                        long pa = p[(int) (i - first)];
                        OdpPage had = present.get(i);
                        if (had != null && had.phys() == pa && (!write || had.forWrite())) {
                            continue;
                        }
                        if (had != null) {
                            present.remove(i);
                            dma.unmapSingle(had.dma(), PAGE, DmaDirection.BIDIRECTIONAL);
                        }
                        present.put(i, new OdpPage(pa, dma.mapSingle(pa, PAGE, DmaDirection.BIDIRECTIONAL), write));
                    }
                }
                keep = true;
                return;
            } finally {
                if (!keep) {
                    rw.readLock().unlock();
                }
            }
        }
    }

    @Override
    synchronized List<DmaSegment> translate(long offset, long len) {
        checkSpan(offset, len);
        SgAppendTable<DmaSegment> out = SgAppendTable.dmaSegments();
        long va = addr + offset;
        long stop = va + len;
        while (va < stop) {
            long i = (va - start) >>> HostMemory.PAGE_SHIFT;
            long in = va & (PAGE - 1);
            long n = Math.min(PAGE - in, stop - va);
            OdpPage page = present.get(i);
            if (page == null) {
                throw new IllegalStateException("ODP page " + i + " is not present under the read lock");
            }
            out.append(page.dma() + in, n);
            va += n;
        }
        return out.toList();
    }

    /** The notifier callback ({@code ib_umem_notifier_invalidate_range} and the driver's invalidate). */
    @Override
    public void invalidate(MmuRange range, InvalidateReason reason, long seq) {
        long s = Math.max(range.start(), start);
        long e = Math.min(range.end(), end);
        if (s >= e) {
            return;
        }
        mr.rw.writeLock().lock();
        try {
            long iovaStart = iova + (Math.max(s, addr) - addr);
            long iovaEnd = iova + (Math.min(e, addr + length) - addr);
            if (iovaEnd > iovaStart) {
                mr.dev.provider.invalidateRange(mr, iovaStart, iovaEnd - iovaStart);
            }
            unmap((s - start) >>> HostMemory.PAGE_SHIFT, (e - 1 - start) >>> HostMemory.PAGE_SHIFT);
        } finally {
            mr.rw.writeLock().unlock();
        }
    }

    /** Unmaps the present pages with indices {@code first..last}: only those, however wide the range. */
    private synchronized void unmap(long first, long last) {
        Iterator<Map.Entry<Long, OdpPage>> it = present.subMap(first, true, last, true).entrySet().iterator();
        while (it.hasNext()) {
            OdpPage page = it.next().getValue();
            it.remove();
            try {
                dma.unmapSingle(page.dma(), PAGE, DmaDirection.BIDIRECTIONAL);
            } catch (RuntimeException ex) {
                LOG.error("{}: unmap of an ODP page failed", dma.deviceName(), ex);
            }
        }
    }

    /** Stops the notifier; must run without the region's lock (a running callback waits for it). */
    @Override
    void detach() {
        sub.close();
    }

    @Override
    void release() {
        unmap(0, (end - start - 1) >>> HostMemory.PAGE_SHIFT);
    }
}
