package dev.dmaplane.rdma.impl;

/**
 * Bytes {@code [start, start + length)} of a 64-bit address or offset space, compared as rxe's
 * {@code mr_check_range} compares an access with a region: unsigned ({@code u64 iova}, {@code size_t length}).
 */
record IovaRange(long start, long length) {
    /**
     * Whether {@code [a, a + len)} lies inside: {@code a} not below the start, {@code len} not above the length, the
     * access's end not wrapping past 2^64 and not beyond the range's end, all in unsigned arithmetic, so that no
     * address from {@code start + 2^63} on passes and no negative {@code len} counts as short.
     */
    boolean covers(long a, long len) {
        return Long.compareUnsigned(a, start) >= 0
                && Long.compareUnsigned(len, length) <= 0
                && Long.compareUnsigned(a + len, a) >= 0
                && Long.compareUnsigned(a - start, length - len) <= 0;
    }

    /** The range as {@code [0x start, +length)} for messages. */
    @Override
    public String toString() {
        return "[0x" + Long.toHexString(start) + ", +" + Long.toUnsignedString(length) + ")";
    }
}
