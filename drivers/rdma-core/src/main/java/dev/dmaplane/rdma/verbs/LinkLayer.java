package dev.dmaplane.rdma.verbs;

/** Link layer of a port ({@code IBV_LINK_LAYER_*}). */
public enum LinkLayer {
    UNSPECIFIED(0), INFINIBAND(1), ETHERNET(2);

    private final int value;

    LinkLayer(int value) {
        this.value = value;
    }

    public int value() {
        return value;
    }
}
