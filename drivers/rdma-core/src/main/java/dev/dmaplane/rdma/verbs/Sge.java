package dev.dmaplane.rdma.verbs;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/**
 * A scatter/gather element ({@code struct ibv_sge}): {@code length} bytes at {@code addr} in the memory region
 * whose local key is {@code lkey}. For an inline send the bytes are copied from the caller's address space at post
 * time and the key is not looked at.
 *
 * @param addr   virtual address (the region's IOVA space)
 * @param length bytes, an unsigned 32-bit value
 * @param lkey   local key of a memory region
 */
public record Sge(long addr, long length, int lkey) {
    public Sge {
        if (length < 0 || length > 0xFFFF_FFFFL) {
            throw new ErrnoException(Errno.EINVAL, "sge length " + length + " is not an unsigned 32-bit value");
        }
    }

    @Override
    public String toString() {
        return "sge[0x" + Long.toHexString(addr) + "+" + length + " lkey 0x" + Integer.toHexString(lkey) + "]";
    }
}
