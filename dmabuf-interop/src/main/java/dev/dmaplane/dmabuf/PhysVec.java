package dev.dmaplane.dmabuf;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/**
 * One physical range of a dma-buf's backing ({@code struct dma_buf_phys_vec}, include/linux/dma-buf-mapping.h):
 * {@code length} bytes from CPU physical address {@code paddr}, RAM or a device's memory BAR.
 */
public record PhysVec(long paddr, long length) {
    public PhysVec {
        ErrnoException.check(length > 0 && Long.compareUnsigned(paddr + length - 1, paddr) >= 0, Errno.EINVAL,
                String.format("physical range %#x+%#x is empty or wraps", paddr, length));
    }
}
