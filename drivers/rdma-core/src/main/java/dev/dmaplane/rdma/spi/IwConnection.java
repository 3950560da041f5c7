package dev.dmaplane.rdma.spi;

import org.osgi.annotation.versioning.ConsumerType;

import java.net.InetSocketAddress;

/** An iWARP connection of one QP, as the connection manager holds it ({@code iw_cm_id} after connect or accept). */
@ConsumerType
public interface IwConnection {
    int qpn();

    InetSocketAddress local();

    InetSocketAddress remote();

    /**
     * {@code iw_cm_disconnect}: closes the stream (the QP goes to ERR and flushes, as siw's
     * {@code siw_qp_cm_drop}); DISCONNECT and CLOSE follow on the handler. Idempotent.
     */
    void disconnect();
}
