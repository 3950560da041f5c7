package dev.dmaplane.rdma.verbs;

/** Queue pair capabilities ({@code struct ibv_qp_cap}): queue depths, SGE counts, inline size. */
public record QpCap(int maxSendWr, int maxRecvWr, int maxSendSge, int maxRecvSge, int maxInlineData) {
}
