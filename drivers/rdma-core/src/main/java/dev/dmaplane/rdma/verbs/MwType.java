package dev.dmaplane.rdma.verbs;

/**
 * Memory window types ({@code enum ib_mw_type}): type 1 is bound with {@code ibv_bind_mw} and belongs to its PD;
 * type 2 is bound with a BIND_MW work request and is then tied to that QP.
 */
public enum MwType {
    TYPE_1(1), TYPE_2(2);

    private final int value;

    MwType(int value) {
        this.value = value;
    }

    public int value() {
        return value;
    }
}
