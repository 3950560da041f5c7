package dev.dmaplane.rdma.verbs;

/** Operations a transport supports on ODP memory ({@code enum ib_odp_transport_cap_bits}). */
public enum OdpOp {
    SEND, RECV, WRITE, READ, ATOMIC, SRQ_RECV
}
