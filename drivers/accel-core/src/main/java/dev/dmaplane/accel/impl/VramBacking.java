package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.Placement;
import dev.dmaplane.accel.spi.Aperture;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.p2pdma.P2pAllocation;

import java.lang.foreign.MemorySegment;
import java.util.List;

/** A buffer object in VRAM ({@code TTM_PL_VRAM}): one range of the device's {@link VramManager}. */
final class VramBacking implements Backing {
    private final VramManager manager;
    private final VramManager.Range range;
    private boolean freed;

    VramBacking(VramManager manager, VramManager.Range range) {
        this.manager = manager;
        this.range = range;
    }

    long offset() {
        return range.offset();
    }

    @Override
    public long size() {
        return range.size();
    }

    @Override
    public Placement placement() {
        return cpuVisible() ? Placement.VISIBLE_VRAM : Placement.VRAM;
    }

    @Override
    public List<GpuRun> runs() {
        return List.of(new GpuRun(Aperture.VRAM, range.offset(), range.size()));
    }

    @Override
    public boolean cpuVisible() {
        return range.window() != null;
    }

    @Override
    public void read(long offset, MemorySegment dst) {
        window().read(offset, dst);
    }

    @Override
    public void write(long offset, MemorySegment src) {
        window().write(offset, src);
    }

    private P2pAllocation window() {
        ErrnoException.check(range.window() != null, Errno.EFAULT, String.format("VRAM %#x+%#x is beyond the CPU-visible window",
                range.offset(), range.size()));
        return range.window();
    }

    @Override
    public synchronized void free() {
        if (!freed) {
            freed = true;
            manager.free(range);
        }
    }

    @Override
    public String toString() {
        return String.format("VRAM %#x+%#x", range.offset(), range.size());
    }
}
