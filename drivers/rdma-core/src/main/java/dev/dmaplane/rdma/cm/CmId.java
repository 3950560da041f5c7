package dev.dmaplane.rdma.cm;

import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.VerbsContext;
import org.osgi.annotation.versioning.ProviderType;

import java.net.InetSocketAddress;

/**
 * {@code struct rdma_cm_id}: a communication endpoint, like a socket. Calls that start something complete with an
 * event on the id's channel. A call in the wrong state fails with {@code EINVAL} and changes nothing; every call on
 * an id whose device went away (DEVICE_REMOVAL) fails with {@code ENODEV}, except {@link #destroy()}.
 * <p>
 * On an iWARP device the connection is the device's iw_cm's ({@code cma.c}'s iWARP branches): the MPA request and
 * reply carry the user's private data whole (up to the 255 bytes a {@code u8} length gives; MPA would take 512),
 * the QP goes to RTR by the rdma_cm and to RTS by the iw_cm, a reject is REJECTED with siw's {@code -ECONNRESET}
 * (the QP in ERR: a retry needs a new QP), a disconnect is DISCONNECTED at both ends without TIMEWAIT_EXIT.
 */
@ProviderType
public interface CmId {
    PortSpace ps();

    EventChannel channel();

    /**
     * {@code rdma_bind_addr}: binds to a local IPv4 address (the wildcard: any) and port (0: a free one). A
     * specific address binds the id to the device and port whose GID table holds it.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EADDRNOTAVAIL} for an address no RDMA port has,
     *                                           {@code EADDRINUSE} for a port another id of the port space has on
     *                                           an overlapping address, {@code EINVAL} when already bound or not
     *                                           IPv4
     */
    void bindAddr(InetSocketAddress addr);

    /**
     * {@code rdma_resolve_addr}: finds the local device and port that reach {@code dst} (binding to {@code src}, or
     * to the port's address, first); ADDR_RESOLVED, or ADDR_ERROR with {@code -EHOSTUNREACH} when no port routes
     * there.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a destination that is not a unicast IPv4
     *                                           address or an id past address resolution, or a bad timeout;
     *                                           {@code EADDRNOTAVAIL} for a source no port has
     */
    void resolveAddr(InetSocketAddress src, InetSocketAddress dst, int timeoutMs);

    /**
     * {@code rdma_resolve_route}: on RoCE the path is made locally ({@code cma_resolve_iboe_route}: GIDs, the
     * port's active MTU, hop limit, traffic class, packet lifetime); ROUTE_RESOLVED.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} before ADDR_RESOLVED or for a bad timeout
     */
    void resolveRoute(int timeoutMs);

    /**
     * The device context of the id's device, opened by the channel for its process (librdmacm's {@code id->verbs});
     * null while the id is not bound to a device.
     */
    VerbsContext verbs();

    /** The port of the id's device, 0 while unbound. */
    int portNum();

    /**
     * {@code rdma_create_qp}: a QP of {@code pd} (which must be of {@link #verbs()}'s device) moved to INIT with the
     * id's port and P_Key index; the CM moves it on to RTR and RTS.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a PD of another device, a QP type the port space
     *                                           does not carry, an id without device or with a QP already
     */
    QueuePair createQp(ProtectionDomain pd, QpInitAttr attr);

    /** The QP made by {@link #createQp}, or null. */
    QueuePair qp();

    /** {@code rdma_destroy_qp}. */
    void destroyQp();

    /**
     * {@code rdma_init_qp_attr}: the attributes that move a QP of this connection to {@code state} (INIT, RTR or
     * RTS), for a QP the caller moves itself.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for another state or before the peer is known
     */
    QpAttr initQpAttr(QpState state);

    /**
     * {@code rdma_connect}: sends a REQ (the id's QP, a random starting PSN, the path, {@code param}'s resources and
     * retry counts, and the rdma_cm IP header with the private data); ESTABLISHED when the REP came and the RTU left
     * (CONNECT_RESPONSE for an id without QP), REJECTED with the reason, or UNREACHABLE after the CM's retries.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} before ROUTE_RESOLVED or for private data over 56
     *                                           bytes; {@code EOPNOTSUPP} in the UDP port space (no SIDR)
     */
    void connect(ConnParam param);

    /**
     * {@code rdma_listen}: CONNECT_REQUEST for each REQ to the id's port; at most {@code backlog} of them wait to
     * be taken ({@link EventChannel#getEvent}), the next are rejected. An unbound id binds to any address first.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EADDRINUSE} when another id listens on the port,
     *                                           {@code EINVAL} for a backlog below 1 or a connected id
     */
    void listen(int backlog);

    /**
     * {@code rdma_accept}: the id's QP moved to RTR and RTS, then a REP; ESTABLISHED when the RTU arrives.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for an id not from CONNECT_REQUEST or private data
     *                                           over 196 bytes
     */
    void accept(ConnParam param);

    /**
     * {@code rdma_reject}: a REJ with reason 28 (consumer defined) and the private data. On InfiniBand and RoCE the
     * connection's state decides ({@code ib_send_cm_rej}): a request received, and on the active side a REQ not
     * answered yet or a REP an id without a QP received (CONNECT_RESPONSE); on iWARP only a request received.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for private data over 255 bytes (librdmacm's
     *                                           {@code rdma_reject} takes a {@code u8} length), an id without a
     *                                           connection in one of those states, or private data over the 148
     *                                           bytes of a REJ (IB and RoCE)
     */
    void reject(byte[] privateData);

    /**
     * {@code rdma_establish}: after CONNECT_RESPONSE on an id without QP, sends the RTU.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} in another state
     */
    void establish();

    /**
     * {@code rdma_disconnect}: the QP to ERR, then a DREQ (or the DREP to the peer's DREQ); DISCONNECTED when the
     * DREP comes (or after the DREQ's retries), TIMEWAIT_EXIT after the time wait.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for an id without a connection (an IB CM one, or an
     *                                           iw_cm_id); a connection in another state than ESTABLISHED or
     *                                           DREQ_RCVD (a rejected request's) sends nothing and returns
     */
    void disconnect();

    /**
     * {@code rdma_destroy_id}: leaves the connection (a REJ, DREQ or DREP as the IB CM's state needs), releases the
     * port. Its QP stays (destroy it with {@link #destroyQp()}). Idempotent.
     */
    void destroy();

    /** The bound source address, or null. */
    InetSocketAddress localAddr();

    /** The destination address, or null. */
    InetSocketAddress remoteAddr();

    /** The {@code rdma_cm_state} name. */
    String state();
}
