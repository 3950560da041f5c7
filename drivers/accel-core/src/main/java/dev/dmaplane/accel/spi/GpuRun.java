package dev.dmaplane.accel.spi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.Objects;

/**
 * A contiguous run of a buffer object's backing as the GPU reaches it (one entry of {@code struct ttm_resource}'s
 * cursor, {@code ttm_resource_cursor}): a VRAM offset or a DMA address of host pages mapped for the GPU.
 */
public record GpuRun(Aperture aperture, long address, long length) {
    public GpuRun {
        Objects.requireNonNull(aperture, "aperture");
        if (address < 0 || length <= 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("GPU run %s %#x+%#x: address and length must be positive", aperture, address, length));
        }
    }

    /** The tagged GPU address of the first byte ({@link Aperture#encode}). */
    public long gpuAddress() {
        return aperture.encode(address);
    }
}
