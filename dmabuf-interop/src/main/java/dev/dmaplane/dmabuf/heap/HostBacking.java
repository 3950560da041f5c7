package dev.dmaplane.dmabuf.heap;

import dev.dmaplane.dma.SgAppendTable;
import dev.dmaplane.dma.SgEntry;
import dev.dmaplane.dma.SgTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * Host page blocks backing a buffer, allocated as {@code system_heap.c} does: the largest of orders 8, 4 and 0
 * that still fits the remaining size, so big buffers get few, large blocks. Each block holds one reference until
 * {@link #free()}.
 */
final class HostBacking implements Placement {
    /** The orders the system heap tries, largest first ({@code orders[]} in system_heap.c). */
    static final int[] ORDERS = {8, 4, 0};

    private final HostMemory mem;
    private final long[] pfns;
    private final int[] orders;
    private final long size;
    private volatile boolean freed;

    private HostBacking(HostMemory mem, long[] pfns, int[] orders, long size) {
        this.mem = mem;
        this.pfns = pfns;
        this.orders = orders;
        this.size = size;
    }

    /**
     * Allocates {@code size} bytes (a multiple of the page size) of zeroed host memory; on failure frees what it
     * took and throws {@code ENOMEM}.
     */
    static HostBacking allocate(HostMemory mem, long size) {
        long pages = size >>> HostMemory.PAGE_SHIFT;
        if (pages > mem.totalFrames()) {
            throw new ErrnoException(Errno.ENOMEM, "allocation of " + size + " bytes exceeds all " + mem.size() + " bytes of RAM");
        }
        List<long[]> blocks = new ArrayList<>();
        long left = pages;
        try {
            while (left > 0) {
                long pfn = -1;
                int got = -1;
                for (int order : ORDERS) {
                    if ((1L << order) > left) {
                        continue;
                    }
                    try {
                        pfn = mem.allocPages(order);
                        got = order;
                        break;
                    } catch (ErrnoException e) {
                        if (e.errno() != Errno.ENOMEM || order == 0) {
                            throw e;
                        }
                    }
                }
                blocks.add(new long[]{pfn, got});
                left -= 1L << got;
            }
        } catch (RuntimeException e) {
            for (long[] b : blocks) {
                mem.putPage(b[0]);
            }
            throw e;
        }
        long[] p = new long[blocks.size()];
        int[] o = new int[blocks.size()];
        for (int i = 0; i < p.length; i++) {
            p[i] = blocks.get(i)[0];
            o[i] = (int) blocks.get(i)[1];
        }
        return new HostBacking(mem, p, o, size);
    }

    /** The blocks as a scatter-gather table, physically adjacent blocks merged. */
    SgTable sgTable() {
        checkLive();
        SgAppendTable<SgEntry> runs = SgAppendTable.sgEntries();
        for (int i = 0; i < pfns.length; i++) {
            runs.append(pfns[i] << HostMemory.PAGE_SHIFT, HostMemory.PAGE_SIZE << orders[i]);
        }
        return new SgTable(runs.toList());
    }

    int blockCount() {
        return pfns.length;
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public void read(long offset, MemorySegment dst) {
        copy(offset, dst, false);
    }

    @Override
    public void write(long offset, MemorySegment src) {
        copy(offset, src, true);
    }

    private void copy(long offset, MemorySegment data, boolean toBacking) {
        checkLive();
        long done = 0;
        long len = data.byteSize();
        long blockStart = 0;
        for (int i = 0; i < pfns.length && done < len; i++) {
            long blockLen = HostMemory.PAGE_SIZE << orders[i];
            long at = offset + done;
            if (at < blockStart + blockLen) {
                long within = at - blockStart;
                long n = Math.min(blockLen - within, len - done);
                long pa = (pfns[i] << HostMemory.PAGE_SHIFT) + within;
                if (toBacking) {
                    mem.write(pa, data.asSlice(done, n));
                } else {
                    mem.read(pa, data.asSlice(done, n));
                }
                done += n;
            }
            blockStart += blockLen;
        }
    }

    @Override
    public synchronized void free() {
        if (freed) {
            return;
        }
        freed = true;
        for (long pfn : pfns) {
            mem.putPage(pfn);
        }
    }

    boolean isFreed() {
        return freed;
    }

    private void checkLive() {
        ErrnoException.check(!freed, Errno.ENODEV, "host backing was freed");
    }

    @Override
    public String describe() {
        return "system memory, " + pfns.length + " block(s)";
    }
}
