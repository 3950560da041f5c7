package dev.dmaplane.rdma.spi;

import org.osgi.annotation.versioning.ConsumerType;

import java.net.InetSocketAddress;

/**
 * The connection manager an iWARP driver offers the core ({@code struct iw_cm_verbs} of {@code include/rdma/iw_cm.h},
 * called by {@code drivers/infiniband/core/iwcm.c}): listen on an IPv4 address and port, connect a QP to a peer with
 * private data in the MPA request, and, for a request that arrived, accept or reject it ({@link IwConnRequest}).
 * What happens is reported to the caller's {@link IwCmHandler} on the driver's threads. An iWARP QP has no other
 * way to a connection: {@code modify_qp} to RTS is refused until the connection is up
 * ({@link HwQp#establish()}).
 */
@ConsumerType
public interface IwCm {
    /**
     * {@code create_listen}: accepts TCP connections on {@code local} and reports each valid MPA request as a
     * {@link IwCmEvent.Type#CONNECT_REQUEST} to {@code handler}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for an address that is not IPv4 or a backlog below 1,
     *                                           {@code EADDRINUSE} or {@code EADDRNOTAVAIL} when it cannot be bound
     */
    IwListen listen(InetSocketAddress local, int backlog, IwCmHandler handler);

    /**
     * {@code connect}: opens a TCP connection for QP {@code qpn} (in INIT or RTR) to {@code remote} and sends the MPA
     * request carrying {@code param}'s private data. The TCP connection is made in the caller's thread, as
     * {@code siw_connect} makes it (blocking), and its failure is thrown, with no event. The MPA outcome comes to
     * {@code handler} as {@link IwCmEvent.Type#CONNECT_REPLY}: status null when accepted (the QP is in RTS then),
     * {@code ECONNRESET} when rejected (as {@code siw_proc_mpareply} reports it; the QP is in ERR then),
     * {@code ECONNRESET} or {@code ETIMEDOUT} when the peer went away (the QP is in ERR then), {@code EINVAL} when
     * the driver refused the reply (malformed, or a failed IRD/ORD or RTR negotiation: {@code siw_proc_mpareply}'s
     * {@code out_err}; the QP is in ERR then).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a QP that does not exist, is not RC, is past RTR
     *                                           or is connected already, or private data over the MPA limit (512
     *                                           bytes); {@code ENOMEM} for an ORD or IRD above the device's
     *                                           ({@code siw_connect}); {@code ECONNREFUSED} when nothing listens at
     *                                           {@code remote}, {@code EHOSTUNREACH} or {@code ETIMEDOUT} when it
     *                                           cannot be reached: the QP is then as it was
     */
    IwConnection connect(int qpn, InetSocketAddress remote, IwConnParam param, IwCmHandler handler);
}
