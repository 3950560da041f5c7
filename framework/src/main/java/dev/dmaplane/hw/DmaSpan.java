package dev.dmaplane.hw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/**
 * One element of a scatter/gather list a device walks: {@code length} bytes at bus address {@code busAddr} (an
 * NVMe PRP entry or SGL data block, a descriptor's buffer).
 *
 * @param busAddr the bus address (an IOVA behind an IOMMU)
 * @param length  bytes, at least one; the span must not wrap the 64-bit address space
 */
public record DmaSpan(long busAddr, long length) {
    public DmaSpan {
        if (length <= 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("DMA span at %#x has length %d; it must be positive",
                    busAddr, length));
        }
        if (Long.compareUnsigned(busAddr + length - 1, busAddr) < 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("DMA span at %#x of %d bytes wraps the address space",
                    busAddr, length));
        }
    }
}
