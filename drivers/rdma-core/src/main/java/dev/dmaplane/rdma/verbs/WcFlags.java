package dev.dmaplane.rdma.verbs;

/** Work completion flags ({@code enum ib_wc_flags}, {@code IBV_WC_*} flags) as an int bit mask. */
public final class WcFlags {
    /** A GRH is present in the first 40 bytes of the receive buffer (UD). */
    public static final int GRH = 1;
    /** {@code imm_data} is valid. */
    public static final int WITH_IMM = 1 << 1;
    /** The IP checksum was checked and is good. */
    public static final int IP_CSUM_OK = 1 << 2;
    /** {@code invalidated_rkey} is valid: a send with invalidate consumed the receive. */
    public static final int WITH_INV = 1 << 3;

    private WcFlags() {
    }
}
