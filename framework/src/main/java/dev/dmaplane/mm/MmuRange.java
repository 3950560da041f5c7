package dev.dmaplane.mm;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/**
 * A virtual address range being invalidated ({@code struct mmu_notifier_range}), {@code [start, end)}.
 *
 * @param start first address
 * @param end   first address after the range
 */
public record MmuRange(long start, long end) {
    public MmuRange {
        if (start < 0 || end <= start) {
            throw new ErrnoException(Errno.EINVAL, "bad notifier range [0x" + Long.toHexString(start) + ", 0x"
                    + Long.toHexString(end) + ")");
        }
    }

    public long length() {
        return end - start;
    }

    /** Whether the range shares at least one byte with {@code [otherStart, otherEnd)}. */
    public boolean overlaps(long otherStart, long otherEnd) {
        return start < otherEnd && otherStart < end;
    }

    @Override
    public String toString() {
        return "[0x" + Long.toHexString(start) + ", 0x" + Long.toHexString(end) + ")";
    }
}
