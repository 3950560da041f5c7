package dev.dmaplane.rdma.verbs;

/** Send flags ({@code enum ib_send_flags}, {@code IBV_SEND_*}) as an int bit mask. */
public final class SendFlags {
    /** Wait for earlier RDMA reads and atomics to complete before this one starts. */
    public static final int FENCE = 1;
    /** Generate a completion even when the QP was created without {@code sq_sig_all}. */
    public static final int SIGNALED = 1 << 1;
    /** Ask the receiver's CQ for a solicited event. */
    public static final int SOLICITED = 1 << 2;
    /** Copy the data at post time; the SGEs' lkeys are not checked. */
    public static final int INLINE = 1 << 3;
    /** Every flag dmaplane knows. */
    public static final int ALL = FENCE | SIGNALED | SOLICITED | INLINE;

    private SendFlags() {
    }
}
