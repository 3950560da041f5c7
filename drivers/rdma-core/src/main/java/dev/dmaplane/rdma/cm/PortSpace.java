package dev.dmaplane.rdma.cm;

/**
 * {@code enum rdma_ucm_port_space}: the port space of an id, which with its port number gives the IB service ID
 * ({@code cma_get_service_id}: {@code ps << 16 | port}).
 */
public enum PortSpace {
    /** {@code RDMA_PS_IPOIB}. */
    IPOIB(0x0002),
    /** {@code RDMA_PS_TCP}: reliable connected QPs. */
    TCP(0x0106),
    /** {@code RDMA_PS_UDP}: unreliable datagram QPs. */
    UDP(0x0111),
    /** {@code RDMA_PS_IB}. */
    IB(0x013F);

    /** The value of {@code rdma_cma.h}. */
    public final int value;

    PortSpace(int value) {
        this.value = value;
    }

    /** {@code cma_get_service_id}: the service ID of {@code port} in this space. */
    public long serviceId(int port) {
        return ((long) value << 16) + (port & 0xFFFF);
    }
}
