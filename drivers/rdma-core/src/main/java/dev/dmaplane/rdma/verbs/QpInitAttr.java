package dev.dmaplane.rdma.verbs;

/**
 * What {@code ibv_create_qp} takes ({@code struct ibv_qp_init_attr}). With an SRQ, {@code cap.maxRecvWr} and
 * {@code cap.maxRecvSge} are ignored.
 *
 * @param sendCq   CQ of send completions
 * @param recvCq   CQ of receive completions
 * @param srq      shared receive queue, or null
 * @param cap      queue sizes
 * @param qpType   transport
 * @param sqSigAll every send work request completes with a CQE, not only signaled ones
 */
public record QpInitAttr(CompletionQueue sendCq, CompletionQueue recvCq, SharedReceiveQueue srq, QpCap cap,
                         QpType qpType, boolean sqSigAll) {
}
