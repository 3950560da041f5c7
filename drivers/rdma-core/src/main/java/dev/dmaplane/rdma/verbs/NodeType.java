package dev.dmaplane.rdma.verbs;

/**
 * The kind of RDMA node a device is ({@code enum rdma_node_type}, {@code IBV_NODE_*}) with the transport it speaks
 * ({@code rdma_node_get_transport}, {@code IBV_TRANSPORT_*}): what a verbs application reads to tell an InfiniBand or
 * RoCE channel adapter from an iWARP RNIC.
 */
public enum NodeType {
    /** A channel adapter: InfiniBand or RoCE ({@code IBV_NODE_CA}). */
    CA(1, Transport.IB),
    /** An iWARP RDMA NIC ({@code IBV_NODE_RNIC}). */
    RNIC(4, Transport.IWARP);

    /** {@code enum ibv_transport_type} with its numeric values. */
    public enum Transport {
        IB(0), IWARP(1);

        private final int value;

        Transport(int value) {
            this.value = value;
        }

        public int value() {
            return value;
        }
    }

    private final int value;
    private final Transport transport;

    NodeType(int value, Transport transport) {
        this.value = value;
        this.transport = transport;
    }

    public int value() {
        return value;
    }

    /** {@code rdma_node_get_transport}: the transport this kind of node speaks. */
    public Transport transport() {
        return transport;
    }
}
