package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.Placement;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.dma.SgAppendTable;
import dev.dmaplane.dma.SgEntry;
import dev.dmaplane.dma.SgTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;

/**
 * A buffer object in host memory ({@code TTM_PL_TT}): page frames populated and mapped for the GPU with its DMA API
 * at once ({@code ttm_tt_populate} then {@code dma_map_sgtable}, as amdgpu's GTT does), unmapped and put back by
 * {@link #free}. Frames come in the largest blocks the buddy allocator has, as {@code ttm_pool_alloc} takes them, so
 * the IOMMU maps 2 MiB blocks and the GPU copies whole runs instead of single pages. They are zeroed, except for a
 * move's destination, which the move overwrites ({@code ttm_tt_create(bo, zero_alloc)} is false when the object
 * comes from VRAM) and which {@link #clear} zeroes if the move fails.
 */
final class HostPages implements Backing {
    private final HostMemory mem;
    private final DmaApi dma;
    /** The frame of each page, for CPU access. */
    private final long[] pfns;
    /** The first frame of each allocated block, each holding one reference ({@code put_page} frees a block). */
    private final long[] blocks;
    private final MappedSg mapped;
    private boolean freed;

    private HostPages(HostMemory mem, DmaApi dma, long[] pfns, long[] blocks, MappedSg mapped) {
        this.mem = mem;
        this.dma = dma;
        this.pfns = pfns;
        this.blocks = blocks;
        this.mapped = mapped;
    }

    /**
     * Allocates {@code size} bytes (a multiple of the page size), zeroed when {@code zero} ({@code __GFP_ZERO}), and
     * maps them for the GPU; on failure puts back what it took and rethrows ({@code ENOMEM} from the page allocator
     * or the DMA layer). Each block is of the largest order that fits what is left, one order lower while the
     * allocator has none of it ({@code ttm_pool_alloc}'s loop); order 0 failing is the {@code ENOMEM}.
     */
    static HostPages allocate(HostMemory mem, DmaApi dma, long size, boolean zero) {
        int n = (int) (size >>> HostMemory.PAGE_SHIFT);
        long[] pfns = new long[n];
        long[] blocks = new long[n];
        int nblocks = 0;
        try {
            int got = 0;
            int order = HostMemory.MAX_ORDER;
            while (got < n) {
                order = Math.min(order, 31 - Integer.numberOfLeadingZeros(n - got));
                long pfn;
                try {
                    pfn = mem.allocPages(order, zero);
                } catch (ErrnoException e) {
                    if (e.errno() != Errno.ENOMEM || order == 0) {
                        throw e;
                    }
                    order--;
                    continue;
                }
                blocks[nblocks++] = pfn;
                for (int i = 0; i < 1 << order; i++) {
                    pfns[got++] = pfn + i;
                }
            }
            MappedSg mapped = dma.mapSg(physicalRuns(pfns), DmaDirection.BIDIRECTIONAL);
            return new HostPages(mem, dma, pfns, Arrays.copyOf(blocks, nblocks), mapped);
        } catch (RuntimeException e) {
            for (int i = 0; i < nblocks; i++) {
                mem.putPage(blocks[i]);
            }
            throw e;
        }
    }

    /** The frames as physical runs, adjacent frames merged. */
    private static SgTable physicalRuns(long[] pfns) {
        SgAppendTable<SgEntry> runs = SgAppendTable.sgEntries();
        for (long pfn : pfns) {
            runs.append(pfn << HostMemory.PAGE_SHIFT, HostMemory.PAGE_SIZE);
        }
        return new SgTable(runs.toList());
    }

    /** The page frames as physical runs, adjacent frames merged (what an importer maps with its own DMA API). */
    SgTable pages() {
        return physicalRuns(pfns);
    }

    @Override
    public long size() {
        return (long) pfns.length << HostMemory.PAGE_SHIFT;
    }

    @Override
    public Placement placement() {
        return Placement.HOST;
    }

    @Override
    public List<GpuRun> runs() {
        return Backing.systemRuns(mapped.segments());
    }

    @Override
    public boolean cpuVisible() {
        return true;
    }

    @Override
    public void read(long offset, MemorySegment dst) {
        copy(offset, dst, false);
    }

    @Override
    public void write(long offset, MemorySegment src) {
        copy(offset, src, true);
    }

    private void copy(long offset, MemorySegment data, boolean toPages) {
        long done = 0;
        while (done < data.byteSize()) {
            long at = offset + done;
            int page = (int) (at >>> HostMemory.PAGE_SHIFT);
            long within = at & (HostMemory.PAGE_SIZE - 1);
            long n = Math.min(HostMemory.PAGE_SIZE - within, data.byteSize() - done);
            long pa = (pfns[page] << HostMemory.PAGE_SHIFT) + within;
            if (toPages) {
                mem.write(pa, data.asSlice(done, n));
            } else {
                mem.read(pa, data.asSlice(done, n));
            }
            done += n;
        }
    }

    /** Zeroes every frame by the CPU: a failed move's destination, so that nobody reads what the frames held. */
    synchronized void clear() {
        if (freed) {
            return;
        }
        for (long block : blocks) {
            mem.slice(block << HostMemory.PAGE_SHIFT, HostMemory.PAGE_SIZE << mem.orderOf(block)).fill((byte) 0);
        }
    }

    @Override
    public synchronized void free() {
        if (freed) {
            return;
        }
        freed = true;
        dma.unmapSg(mapped, DmaDirection.BIDIRECTIONAL);
        for (long block : blocks) {
            mem.putPage(block);
        }
    }

    @Override
    public String toString() {
        return "host " + pfns.length + " page(s) in " + blocks.length + " block(s)";
    }
}
