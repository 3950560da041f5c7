package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.Placement;
import dev.dmaplane.accel.spi.Aperture;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.dma.DmaSegment;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/** Where a buffer object's bytes are now ({@code struct ttm_resource}): a VRAM range, host pages, or an imported dma-buf. */
sealed interface Backing permits VramBacking, HostPages, ImportedPages {
    long size();

    /** {@link Placement#VISIBLE_VRAM} for VRAM inside the window, {@link Placement#VRAM} beyond it, or HOST. */
    Placement placement();

    /** The runs the GPU reaches the bytes through, in order. */
    List<GpuRun> runs();

    /** Whether the CPU reaches the bytes ({@code ttm_resource}'s {@code bus.is_iomem} or system pages). */
    boolean cpuVisible();

    /** CPU read; only for a {@link #cpuVisible} backing. */
    void read(long offset, MemorySegment dst);

    /** CPU write; only for a {@link #cpuVisible} backing. */
    void write(long offset, MemorySegment src);

    /** Gives the memory back; idempotent and thread-safe. */
    void free();

    /** {@code runs} cut to {@code [offset, offset + length)}. */
    static List<GpuRun> slice(List<GpuRun> runs, long offset, long length) {
        List<GpuRun> out = new ArrayList<>();
        long at = 0;
        long end = offset + length;
        for (GpuRun r : runs) {
            long from = Math.max(offset, at);
            long to = Math.min(end, at + r.length());
            if (from < to) {
                out.add(new GpuRun(r.aperture(), r.address() + (from - at), to - from));
            }
            at += r.length();
        }
        return out;
    }

    /** Host memory the GPU reaches through its IOMMU: one SYSTEM run per DMA segment of the GPU's mapping. */
    static List<GpuRun> systemRuns(List<DmaSegment> segments) {
        List<GpuRun> out = new ArrayList<>(segments.size());
        for (DmaSegment s : segments) {
            out.add(new GpuRun(Aperture.SYSTEM, s.dmaAddress(), s.length()));
        }
        return out;
    }
}
