package dev.dmaplane.rdma.verbs;

/**
 * A work completion ({@code struct ibv_wc}). When {@code status} is not {@link WcStatus#SUCCESS}, only
 * {@code wrId}, {@code status}, {@code qpNum} and {@code vendorErr} are meaningful, as {@code ibv_poll_cq(3)}
 * says. {@code immData} is valid with {@link WcFlags#WITH_IMM}, {@code invalidatedRkey} with
 * {@link WcFlags#WITH_INV}.
 *
 * @param wrId            the work request's identifier
 * @param status          how it ended
 * @param opcode          what completed
 * @param vendorErr       provider-specific error detail (0 when none)
 * @param byteLen         bytes transferred (receives; RDMA reads and atomics on the send side)
 * @param immData         immediate data (host order)
 * @param invalidatedRkey the rkey a send with invalidate invalidated
 * @param qpNum           the local QP the work request belonged to
 * @param srcQp           the remote QP (UD receives)
 * @param wcFlags         {@link WcFlags}
 * @param pkeyIndex       P_Key index (GSI)
 * @param slid            source LID (0 on RoCE)
 * @param sl              service level
 * @param dlidPathBits    destination LID path bits
 */
public record WorkCompletion(long wrId, WcStatus status, WcOpcode opcode, int vendorErr, long byteLen, int immData,
                             int invalidatedRkey, int qpNum, int srcQp, int wcFlags, int pkeyIndex, int slid, int sl,
                             int dlidPathBits) {

    public boolean isSuccess() {
        return status == WcStatus.SUCCESS;
    }

    @Override
    public String toString() {
        return "wc[wr_id " + wrId + " " + status + " " + opcode + " len " + byteLen + " qp " + qpNum
                + ((wcFlags & WcFlags.WITH_IMM) != 0 ? " imm 0x" + Integer.toHexString(immData) : "")
                + ((wcFlags & WcFlags.WITH_INV) != 0 ? " inv 0x" + Integer.toHexString(invalidatedRkey) : "") + "]";
    }
}
