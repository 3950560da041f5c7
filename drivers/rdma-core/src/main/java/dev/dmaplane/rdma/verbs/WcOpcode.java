package dev.dmaplane.rdma.verbs;

/** Work completion opcodes ({@code enum ib_wc_opcode}, {@code IBV_WC_*}); receive opcodes have bit 7 set. */
public enum WcOpcode {
    SEND(0),
    RDMA_WRITE(1),
    RDMA_READ(2),
    COMP_SWAP(3),
    FETCH_ADD(4),
    BIND_MW(5),
    LOCAL_INV(6),
    RECV(1 << 7),
    RECV_RDMA_WITH_IMM((1 << 7) + 1);

    private final int value;

    WcOpcode(int value) {
        this.value = value;
    }

    public int value() {
        return value;
    }

    /** Whether this completes a receive work request ({@code opcode & IBV_WC_RECV}). */
    public boolean isRecv() {
        return (value & (1 << 7)) != 0;
    }
}
