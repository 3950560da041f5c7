package dev.dmaplane.rdma.spi;

import dev.dmaplane.rdma.verbs.WcFlags;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;

/**
 * How a receive ended, as the provider reports it to {@link HwQp#completeRecv}; the core adds the work request
 * id and QP number.
 *
 * @param status          outcome
 * @param opcode          {@link WcOpcode#RECV} or {@link WcOpcode#RECV_RDMA_WITH_IMM}
 * @param byteLen         bytes placed
 * @param wcFlags         {@link WcFlags}
 * @param immData         immediate data with {@link WcFlags#WITH_IMM}
 * @param invalidatedRkey rkey invalidated with {@link WcFlags#WITH_INV}
 * @param srcQp           sending QP (UD)
 * @param pkeyIndex       P_Key index
 * @param solicited       the sender asked for a solicited event
 */
public record RecvResult(WcStatus status, WcOpcode opcode, long byteLen, int wcFlags, int immData, int invalidatedRkey,
                         int srcQp, int pkeyIndex, boolean solicited) {

    /** A successful receive of a send. */
    public static RecvResult send(long byteLen, int srcQp, boolean solicited) {
        return new RecvResult(WcStatus.SUCCESS, WcOpcode.RECV, byteLen, 0, 0, 0, srcQp, 0, solicited);
    }

    /** A successful receive of a send with immediate. */
    public static RecvResult sendWithImm(long byteLen, int srcQp, int imm, boolean solicited) {
        return new RecvResult(WcStatus.SUCCESS, WcOpcode.RECV, byteLen, WcFlags.WITH_IMM, imm, 0, srcQp, 0, solicited);
    }

    /** A successful receive of a send with invalidate. */
    public static RecvResult sendWithInv(long byteLen, int srcQp, int rkey, boolean solicited) {
        return new RecvResult(WcStatus.SUCCESS, WcOpcode.RECV, byteLen, WcFlags.WITH_INV, 0, rkey, srcQp, 0, solicited);
    }

    /** The receive consumed by an RDMA write with immediate. */
    public static RecvResult writeWithImm(long byteLen, int srcQp, int imm, boolean solicited) {
        return new RecvResult(WcStatus.SUCCESS, WcOpcode.RECV_RDMA_WITH_IMM, byteLen, WcFlags.WITH_IMM, imm, 0, srcQp,
                0, solicited);
    }

    /** A failed receive. */
    public static RecvResult error(WcStatus status) {
        return new RecvResult(status, WcOpcode.RECV, 0, 0, 0, 0, 0, 0, true);
    }

    /** The same result with {@link WcFlags#GRH} set (UD: the first 40 bytes of the buffer hold the GRH). */
    public RecvResult withGrh() {
        return new RecvResult(status, opcode, byteLen, wcFlags | WcFlags.GRH, immData, invalidatedRkey, srcQp,
                pkeyIndex, solicited);
    }
}
