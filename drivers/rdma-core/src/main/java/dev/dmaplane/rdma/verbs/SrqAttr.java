package dev.dmaplane.rdma.verbs;

/**
 * Shared receive queue attributes ({@code struct ibv_srq_attr}). {@code srqLimit} arms the limit event: when
 * fewer than that many work requests remain, SRQ_LIMIT_REACHED is raised once and the limit drops to 0. It is
 * ignored by create.
 */
public record SrqAttr(int maxWr, int maxSge, int srqLimit) {
    /** {@code IBV_SRQ_MAX_WR}: resize. */
    public static final int MAX_WR = 1;
    /** {@code IBV_SRQ_LIMIT}: arm the limit. */
    public static final int LIMIT = 1 << 1;
}
