package dev.dmaplane.rdma.verbs;

/**
 * Send work request opcodes ({@code enum ib_wr_opcode} / {@code enum ibv_wr_opcode}) with their numeric values,
 * and the completion opcode each one reports.
 */
public enum WrOpcode {
    RDMA_WRITE(0, WcOpcode.RDMA_WRITE),
    RDMA_WRITE_WITH_IMM(1, WcOpcode.RDMA_WRITE),
    SEND(2, WcOpcode.SEND),
    SEND_WITH_IMM(3, WcOpcode.SEND),
    RDMA_READ(4, WcOpcode.RDMA_READ),
    ATOMIC_CMP_AND_SWP(5, WcOpcode.COMP_SWAP),
    ATOMIC_FETCH_AND_ADD(6, WcOpcode.FETCH_ADD),
    LOCAL_INV(7, WcOpcode.LOCAL_INV),
    BIND_MW(8, WcOpcode.BIND_MW),
    SEND_WITH_INV(9, WcOpcode.SEND);

    private final int value;
    private final WcOpcode completion;

    WrOpcode(int value, WcOpcode completion) {
        this.value = value;
        this.completion = completion;
    }

    public int value() {
        return value;
    }

    /** The opcode of the send-side completion. */
    public WcOpcode completionOpcode() {
        return completion;
    }

    /** Whether the opcode carries immediate data. */
    public boolean hasImmediate() {
        return this == RDMA_WRITE_WITH_IMM || this == SEND_WITH_IMM;
    }

    /** Whether the opcode is an atomic (8 bytes at an 8-byte aligned remote address). */
    public boolean isAtomic() {
        return this == ATOMIC_CMP_AND_SWP || this == ATOMIC_FETCH_AND_ADD;
    }

    /** Whether the opcode is processed by the local HCA only (no packet on the wire). */
    public boolean isLocal() {
        return this == LOCAL_INV || this == BIND_MW;
    }
}
