package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.accel.spi.Aperture;
import dev.dmaplane.accel.spi.GpuRun;

import java.util.ArrayList;
import java.util.List;

/**
 * VRAM as the accelerator core sees it and as the GPU addresses it. The driver keeps the top {@code reserved} bytes
 * of the CPU-visible window for page tables; the core's VRAM manager gets a range without that hole: its window is
 * the first {@code visible - reserved} bytes and its VRAM beyond the window follows at once, so a core offset at or
 * past {@link #coreVisible()} is the GPU's offset {@code + reserved} (amdgpu translates its VRAM manager's offsets
 * to MC addresses the same way, {@code amdgpu_gmc_vram_mc2pa}).
 */
record VramLayout(long visible, long reserved, long total) {
    long coreVisible() {
        return visible - reserved;
    }

    long coreTotal() {
        return total - reserved;
    }

    /** The GPU's runs for the core's: VRAM runs split at the window's end, those past it moved over the hole. */
    List<GpuRun> toGpu(List<GpuRun> runs) {
        List<GpuRun> out = new ArrayList<>(runs.size());
        for (GpuRun r : runs) {
            if (r.aperture() != Aperture.VRAM || r.address() + r.length() <= coreVisible()) {
                out.add(r);
            } else if (r.address() >= coreVisible()) {
                out.add(new GpuRun(Aperture.VRAM, r.address() + reserved, r.length()));
            } else {
                long in = coreVisible() - r.address();
                out.add(new GpuRun(Aperture.VRAM, r.address(), in));
                out.add(new GpuRun(Aperture.VRAM, visible, r.length() - in));
            }
        }
        return out;
    }
}
