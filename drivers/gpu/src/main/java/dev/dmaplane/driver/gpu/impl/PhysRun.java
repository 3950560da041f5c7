package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import static dev.dmaplane.driver.gpu.model.GpuRegs.APERTURE_SYSTEM;
import static dev.dmaplane.driver.gpu.model.GpuRegs.PAGE_SIZE;

/**
 * A physically contiguous run the GPU reaches ({@code struct amdgpu_res_cursor}'s current segment): an
 * aperture-tagged address (bit 63 set = a bus address in SYSTEM, clear = a VRAM offset) and a length.
 */
public record PhysRun(long address, long length) {
    public PhysRun {
        ErrnoException.check(length > 0, Errno.EINVAL, "GPU run length " + length + " must be positive");
    }

    public static PhysRun vram(long offset, long length) {
        return new PhysRun(offset, length);
    }

    public static PhysRun system(long busAddress, long length) {
        return new PhysRun(busAddress | APERTURE_SYSTEM, length);
    }

    public boolean system() {
        return (address & APERTURE_SYSTEM) != 0;
    }

    /** Whether address and length are whole GPU pages, as page tables need. */
    boolean pageAligned() {
        return ((address | length) & (PAGE_SIZE - 1)) == 0;
    }
}
