package dev.dmaplane.dma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/**
 * One CPU-side element of a scatter-gather list ({@code struct scatterlist} before mapping): a physically
 * contiguous range of host memory.
 *
 * @param physAddr physical address of the first byte
 * @param length   bytes, at least 1
 */
public record SgEntry(long physAddr, long length) {
    public SgEntry {
        if (physAddr < 0) {
            throw new ErrnoException(Errno.EINVAL, "sg entry physical address must be >= 0, not 0x" + Long.toHexString(physAddr));
        }
        if (length <= 0) {
            throw new ErrnoException(Errno.EINVAL, "sg entry length must be > 0, not " + length);
        }
    }

    /** The first byte after the range. */
    public long end() {
        return physAddr + length;
    }
}
