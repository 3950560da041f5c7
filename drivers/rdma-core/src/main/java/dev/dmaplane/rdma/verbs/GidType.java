package dev.dmaplane.rdma.verbs;

/** Type of a GID table entry ({@code enum ib_gid_type}, {@code IBV_GID_TYPE_*}). */
public enum GidType {
    IB(0), ROCE_V1(1), ROCE_V2(2);

    private final int value;

    GidType(int value) {
        this.value = value;
    }

    public int value() {
        return value;
    }
}
