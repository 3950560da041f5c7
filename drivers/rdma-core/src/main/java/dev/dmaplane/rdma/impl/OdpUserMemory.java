package dev.dmaplane.rdma.impl;

import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
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

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * {@code ib_umem_odp} ({@code drivers/infiniband/core/umem_odp.c}): nothing is pinned. The range is watched by an
 * interval notifier; when the HCA touches it, {@link #makePresent} faults the pages in ({@code hmm_range_fault})
 * and maps each one through the DMA API, following the {@code mmu_interval_read_begin}/{@code read_retry}
 * protocol under the region's lock (the kernel's {@code umem_mutex}). An invalidation (munmap, migration,
 * mprotect, exit) takes the region's write lock, so it waits for accesses in progress, then unmaps the pages of
 * the range; the next access faults them in again, or fails when they are gone.
 */
final class OdpUserMemory extends UserMemory implements IntervalNotifier {
    private static final Logger LOG = LoggerFactory.getLogger(OdpUserMemory.class);
    private static final long PAGE = HostMemory.PAGE_SIZE;

    private final AddressSpace mm;
    private final DmaApi dma;
    private final MrImpl mr;
    private final long start;
    private final int npages;
    private final long[] phys;
    private final long[] dmaAddr;
    private final boolean[] present;
    private final boolean[] forWrite;
    private int mapped;
    private IntervalSubscription sub;

    private OdpUserMemory(long addr, long length, long iova, AddressSpace mm, DmaApi dma, MrImpl mr) {
        super(addr, length, iova);
        this.mm = mm;
        this.dma = dma;
        this.mr = mr;
        this.start = addr & -PAGE;
        long pages = ((addr + length + PAGE - 1) & -PAGE) - start >>> HostMemory.PAGE_SHIFT;
        if (pages > Integer.MAX_VALUE - 8) {
            throw new dev.dmaplane.errno.ErrnoException(dev.dmaplane.errno.Errno.ENOMEM, "ODP region of " + pages + " pages");
        }
        this.npages = (int) pages;
        this.phys = new long[npages];
        this.dmaAddr = new long[npages];
        this.present = new boolean[npages];
        this.forWrite = new boolean[npages];
    }

    /** {@code ib_umem_odp_get}: sets up the mirror and inserts its interval notifier. */
    static OdpUserMemory get(AddressSpace mm, DmaApi dma, long addr, long length, long iova, MrImpl mr) {
        OdpUserMemory o = new OdpUserMemory(addr, length, iova, mm, dma, mr);
        o.sub = mm.registerNotifier(o.start, (long) o.npages * PAGE, o);
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
        return mapped;
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
        int first = (int) ((addr + offset - start) >>> HostMemory.PAGE_SHIFT);
        int last = (int) ((addr + offset + len - 1 - start) >>> HostMemory.PAGE_SHIFT);
        long va = start + ((long) first << HostMemory.PAGE_SHIFT);
        long span = (long) (last - first + 1) << HostMemory.PAGE_SHIFT;
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
                    for (int i = first; i <= last; i++) {
                        long pa = p[i - first];
                        if (present[i] && phys[i] == pa && (!write || forWrite[i])) {
                            continue;
                        }
                        if (present[i]) {
                            dma.unmapSingle(dmaAddr[i], PAGE, DmaDirection.BIDIRECTIONAL);
                            present[i] = false;
                            mapped--;
                        }
                        dmaAddr[i] = dma.mapSingle(pa, PAGE, DmaDirection.BIDIRECTIONAL);
                        phys[i] = pa;
                        forWrite[i] = write;
                        present[i] = true;
                        mapped++;
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
        List<DmaSegment> out = new ArrayList<>();
        long va = addr + offset;
        long end = va + len;
        long segStart = -1;
        long segLen = 0;
        while (va < end) {
            int i = (int) ((va - start) >>> HostMemory.PAGE_SHIFT);
            long in = va & (PAGE - 1);
            long n = Math.min(PAGE - in, end - va);
            if (!present[i]) {
                throw new IllegalStateException("ODP page " + i + " is not present under the read lock");
            }
            long bus = dmaAddr[i] + in;
            if (segStart >= 0 && segStart + segLen == bus) {
                segLen += n;
            } else {
                if (segStart >= 0) {
                    out.add(new DmaSegment(segStart, segLen));
                }
                segStart = bus;
                segLen = n;
            }
            va += n;
        }
        if (segStart >= 0) {
            out.add(new DmaSegment(segStart, segLen));
        }
        return out;
    }

    /** The notifier callback ({@code ib_umem_notifier_invalidate_range} and the driver's invalidate). */
    @Override
    public void invalidate(MmuRange range, InvalidateReason reason, long seq) {
        long s = Math.max(range.start(), start);
        long e = Math.min(range.end(), start + (long) npages * PAGE);
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
            unmap((int) ((s - start) >>> HostMemory.PAGE_SHIFT), (int) ((e - 1 - start) >>> HostMemory.PAGE_SHIFT));
        } finally {
            mr.rw.writeLock().unlock();
        }
    }

    private synchronized void unmap(int first, int last) {
        for (int i = first; i <= last; i++) {
            if (present[i]) {
                try {
                    dma.unmapSingle(dmaAddr[i], PAGE, DmaDirection.BIDIRECTIONAL);
                } catch (RuntimeException ex) {
                    LOG.error("{}: unmap of an ODP page failed", dma.deviceName(), ex);
                }
                present[i] = false;
                mapped--;
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
        unmap(0, npages - 1);
    }
}
