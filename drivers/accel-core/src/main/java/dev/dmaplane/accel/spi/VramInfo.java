package dev.dmaplane.accel.spi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.PciFunction;

import java.util.Objects;

/**
 * A device's VRAM as TTM's VRAM manager sees it ({@code amdgpu_gmc}'s {@code real_vram_size} and
 * {@code visible_vram_size}): {@code totalSize} bytes, of which the first {@code visibleSize} are the CPU- and
 * peer-visible window of memory BAR {@code bar} of {@code function}; the rest only the GPU's engines reach.
 */
public record VramInfo(PciFunction function, int bar, long totalSize, long visibleSize) {
    private static final long PAGE = 4096;

    public VramInfo {
        Objects.requireNonNull(function, "function");
        if (visibleSize <= 0 || visibleSize % PAGE != 0 || totalSize < visibleSize || totalSize % PAGE != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: VRAM of %#x bytes with a visible window of %#x: both"
                    + " page-aligned, the window positive and not larger", function.bdf(), totalSize, visibleSize));
        }
    }

    /** Bytes only the GPU's engines reach. */
    public long invisibleSize() {
        return totalSize - visibleSize;
    }
}
