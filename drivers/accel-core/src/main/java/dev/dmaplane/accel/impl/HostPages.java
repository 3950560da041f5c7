package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.Placement;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.dma.SgAppendTable;
import dev.dmaplane.dma.SgEntry;
import dev.dmaplane.dma.SgTable;
import dev.dmaplane.mem.HostMemory;

import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * A buffer object in host memory ({@code TTM_PL_TT}): zeroed page frames, populated and mapped for the GPU with
 * its DMA API at once ({@code ttm_tt_populate} then {@code dma_map_sgtable}, as amdgpu's GTT does), unmapped and
 * put back by {@link #free}.
 */
final class HostPages implements Backing {
    private final HostMemory mem;
    private final DmaApi dma;
    private final long[] pfns;
    private final MappedSg mapped;
    private boolean freed;

    private HostPages(HostMemory mem, DmaApi dma, long[] pfns, MappedSg mapped) {
        this.mem = mem;
        this.dma = dma;
        this.pfns = pfns;
        this.mapped = mapped;
    }

    /**
     * Allocates {@code size} bytes (a multiple of the page size) and maps them for the GPU; on failure puts back
     * what it took and rethrows ({@code ENOMEM} from the page allocator or the DMA layer).
     */
    static HostPages allocate(HostMemory mem, DmaApi dma, long size) {
        int n = (int) (size >>> HostMemory.PAGE_SHIFT);
        long[] pfns = new long[n];
        int got = 0;
        try {
            for (; got < n; got++) {
                pfns[got] = mem.allocPages(0);
            }
            SgAppendTable<SgEntry> runs = SgAppendTable.sgEntries();
            for (long pfn : pfns) {
                runs.append(pfn << HostMemory.PAGE_SHIFT, HostMemory.PAGE_SIZE);
            }
            MappedSg mapped = dma.mapSg(new SgTable(runs.toList()), DmaDirection.BIDIRECTIONAL);
            return new HostPages(mem, dma, pfns, mapped);
        } catch (RuntimeException e) {
            for (int i = 0; i < got; i++) {
                mem.putPage(pfns[i]);
            }
            throw e;
        }
    }

    /** The page frames as physical runs, adjacent frames merged (what an importer maps with its own DMA API). */
    SgTable pages() {
        SgAppendTable<SgEntry> runs = SgAppendTable.sgEntries();
        for (long pfn : pfns) {
            runs.append(pfn << HostMemory.PAGE_SHIFT, HostMemory.PAGE_SIZE);
        }
        return new SgTable(runs.toList());
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

    @Override
    public synchronized void free() {
        if (freed) {
            return;
        }
        freed = true;
        dma.unmapSg(mapped, DmaDirection.BIDIRECTIONAL);
        for (long pfn : pfns) {
            mem.putPage(pfn);
        }
    }

    @Override
    public String toString() {
        return "host " + pfns.length + " page(s)";
    }
}
