package dev.dmaplane.rdma.verbs;

/**
 * Queue pair transport types ({@code enum ib_qp_type}, {@code IBV_QPT_*}) with their numeric values: reliable
 * connected, unreliable connected, unreliable datagram.
 */
public enum QpType {
    RC(2), UC(3), UD(4);

    private final int value;

    QpType(int value) {
        this.value = value;
    }

    public int value() {
        return value;
    }

    /** Connected types (RC, UC) have one remote QP, set by {@code IB_QP_DEST_QPN}. */
    public boolean connected() {
        return this != UD;
    }
}
