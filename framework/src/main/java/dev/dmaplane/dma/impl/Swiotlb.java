package dev.dmaplane.dma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;

import java.lang.foreign.MemorySegment;
import java.util.BitSet;

/**
 * The software IO TLB ({@code kernel/dma/swiotlb.c}): a pool of low memory that streaming mappings bounce
 * through when a device's DMA mask cannot reach the buffer and no IOMMU translates. Bouncing makes the DMA API's
 * sync calls matter: the device sees only the bounce copy, the CPU only the original.
 */
public final class Swiotlb {
    /** Slot size, {@code IO_TLB_SIZE}. */
    public static final int SLOT_SIZE = 1 << 11;

    private final HostMemory memory;
    private final long base;
    private final int slots;
    private final BitSet used;

    /** A bounce slot run: where the device sees the data, and where the CPU keeps it. */
    record Bounce(long tlbAddr, long origAddr, long size, int firstSlot, int nslots) {
    }

    /**
     * Reserves the pool from {@code memory}: 2 MiB blocks allocated first thing at boot, so they sit at the bottom
     * of RAM below any 32-bit mask.
     */
    public Swiotlb(HostMemory memory, int hugeBlocks) {
        if (hugeBlocks <= 0) {
            throw new ErrnoException(Errno.EINVAL, "swiotlb needs at least one 2 MiB block, not " + hugeBlocks);
        }
        this.memory = memory;
        long first = -1;
        long prev = -1;
        for (int i = 0; i < hugeBlocks; i++) {
            long pfn = memory.allocPages(HostMemory.MAX_ORDER);
            if (first < 0) {
                first = pfn;
            } else if (pfn != prev + (1L << HostMemory.MAX_ORDER)) {
                throw new ErrnoException(Errno.ENOMEM, "swiotlb pool is not contiguous: frame 0x" + Long.toHexString(pfn));
            }
            prev = pfn;
        }
        this.base = first << HostMemory.PAGE_SHIFT;
        this.slots = (int) ((hugeBlocks * HostMemory.HUGE_PAGE_SIZE) / SLOT_SIZE);
        this.used = new BitSet(slots);
    }

    /** Physical address of the pool. */
    public long base() {
        return base;
    }

    /** Pool size in bytes. */
    public long size() {
        return (long) slots * SLOT_SIZE;
    }

    /** Slots in use. */
    public synchronized int usedSlots() {
        return used.cardinality();
    }

    /** Takes slots for {@code size} bytes at {@code origAddr} and copies the original in ({@code swiotlb_tbl_map_single}). */
    Bounce map(long origAddr, long size, long dmaMask) {
        int n = (int) ((size + SLOT_SIZE - 1) / SLOT_SIZE);
        int start;
        synchronized (this) {
            start = findFree(n);
            if (start < 0) {
                throw new ErrnoException(Errno.ENOMEM, "swiotlb full: no " + n + " free slots for " + size + " bytes");
            }
            used.set(start, start + n);
        }
        long tlb = base + (long) start * SLOT_SIZE;
        if (!DirectDma.fitsMask(tlb, size, dmaMask)) {
            release(start, n);
            throw new ErrnoException(Errno.EIO, "swiotlb pool at 0x" + Long.toHexString(tlb) + " is above DMA mask 0x" + Long.toHexString(dmaMask));
        }
        Bounce b = new Bounce(tlb, origAddr, size, start, n);
        copy(origAddr, tlb, size);
        return b;
    }

    /** Copies the bounce buffer back to the original (device wrote). */
    void syncForCpu(Bounce b) {
        copy(b.tlbAddr(), b.origAddr(), b.size());
    }

    /** Copies the original into the bounce buffer (CPU wrote). */
    void syncForDevice(Bounce b) {
        copy(b.origAddr(), b.tlbAddr(), b.size());
    }

    /** Frees the slots ({@code swiotlb_tbl_unmap_single}). */
    void unmap(Bounce b) {
        release(b.firstSlot(), b.nslots());
    }

    private synchronized void release(int start, int n) {
        used.clear(start, start + n);
    }

    private int findFree(int n) {
        int i = used.nextClearBit(0);
        while (i + n <= slots) {
            int nextUsed = used.nextSetBit(i);
            if (nextUsed < 0 || nextUsed >= i + n) {
                return i;
            }
            i = used.nextClearBit(nextUsed);
        }
        return -1;
    }

    private void copy(long from, long to, long size) {
        long done = 0;
        while (done < size) {
            long n = Math.min(size - done, HostMemory.PAGE_SIZE - ((from + done) & (HostMemory.PAGE_SIZE - 1)));
            n = Math.min(n, HostMemory.PAGE_SIZE - ((to + done) & (HostMemory.PAGE_SIZE - 1)));
            MemorySegment src = memory.slice(from + done, n);
            MemorySegment dst = memory.slice(to + done, n);
            dst.copyFrom(src);
            done += n;
        }
    }
}
