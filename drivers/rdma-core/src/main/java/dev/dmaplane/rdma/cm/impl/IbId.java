package dev.dmaplane.rdma.cm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.RejectReason;
import dev.dmaplane.rdma.cm.impl.CmMessages.Rej;
import dev.dmaplane.rdma.cm.impl.CmMessages.Rep;
import dev.dmaplane.rdma.cm.impl.CmMessages.Req;
import dev.dmaplane.rdma.mad.MadAddress;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.GlobalRoute;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.net.InetSocketAddress;
import java.util.Arrays;

/**
 * The {@code ib_cm_id} under an rdma_cm id on an InfiniBand or RoCE device: the IB branches of {@code cma.c}
 * ({@code cma_connect_ib}, {@code cma_ib_new_conn_id}, {@code cma_accept_ib}, the IB CM calls of
 * {@code rdma_reject}, {@code rdma_establish} and {@code rdma_disconnect}, {@code cma_ib_handler} and
 * {@code cma_rep_recv}, and {@code rdma_init_qp_attr}'s {@code ib_cm_init_qp_attr}) over a connection of
 * {@link IbCm} ({@code cm.c}), with the connection's parameters {@code struct cm_id_private} keeps (the peer's QPN
 * and starting PSN, the retry counts). Made by {@code rdma_connect} or for a REQ a listener took, it stays, whatever
 * state its connection reaches, until {@code rdma_destroy_id}. Every method runs under the rdma_cm lock.
 */
final class IbId implements IbCm.Owner {
    private static final Logger LOG = LoggerFactory.getLogger(IbId.class);

    private final CmaImpl cma;
    private final IdImpl id;
    /** The connection ({@code id_priv->cm_id.ib}); set once, null only after {@link #destroy}. */
    IbCm.Conn conn;
    private int remoteQpn;
    private int remotePsn;
    private int retryCount = 7;
    private int rnrRetryCount = 7;

    private IbId(CmaImpl cma, IdImpl id) {
        this.cma = cma;
        this.id = id;
    }

    /**
     * {@code cma_connect_ib}: the REQ with the route's path from a new connection; EINVAL (and no connection left)
     * when {@code ib_send_cm_req} refuses it.
     */
    static IbId connect(CmaImpl cma, IdImpl id, ConnParam p) {
        IbId ib = new IbId(cma, id);
        byte[] priv = new IpHeader(id.src.getPort(), id.src.getAddress(), id.dst.getAddress())
                .prepend(p.privateData());
        id.responderResources = p.responderResources();
        id.initiatorDepth = p.initiatorDepth();
        ib.retryCount = p.retryCount();
        int rt = cma.responseTimeout();
        int ack = CmaImpl.ackTimeout(CmaImpl.IBOE_PACKET_LIFETIME);
        int qpn = id.qp != null ? id.qp.qpNum() : p.qpNum();
        IbCm.Conn c = cma.cm.create(id.dev, id.port, ib);
        Req sent = new Req(c.localId, id.ps.serviceId(id.dst.getPort()), id.dev.nodeGuid(), 0, qpn,
                p.responderResources(), p.initiatorDepth(), rt, 0, p.flowControl(), id.seqNum, rt, p.retryCount(),
                0xFFFF, id.mtu.value(), p.rnrRetryCount(), cma.maxRetries(), p.srq(), id.sgid.gid(), id.dgid, 0, 0,
                id.trafficClass, id.hopLimit, 0, id.hopLimit <= 1, ack, priv);
        int timeoutMs = 2 * IbCm.toMs(CmaImpl.IBOE_PACKET_LIFETIME) + IbCm.toMs(rt);
        try {
            cma.cm.sendReq(c, sent, new MadAddress(id.sgid.gid(), id.dgid, 1, MadAddress.GSI_QKEY, 0,
                    id.trafficClass, id.hopLimit), timeoutMs, cma.maxRetries());
        } catch (RuntimeException e) {
            cma.cm.destroy(c);
            throw e;
        }
        ib.conn = c;
        return ib;
    }

    /**
     * {@code cma_ib_new_conn_id} for a REQ a listener took: the new id bound and routed as the REQ says, in CONNECT,
     * with CONNECT_REQUEST queued; then, as {@code cma_ib_req_handler} does for an id still in CONNECT once the
     * listener's handler returned, {@code ib_prepare_cm_mra} (MRA_REQ_SENT).
     */
    static IbId requested(CmaImpl cma, IdImpl id, IdImpl listener, IbCm.Conn c, Req req, IpHeader h) {
        IbId ib = new IbId(cma, id);
        id.dev = c.dev;
        id.port = c.port;
        id.sgid = CmaImpl.gidOf(id.dev, h.dst());
        if (id.sgid == null) {
            id.sgid = id.dev.gidTable().stream().filter(e -> e.gid().equals(c.peer.localGid())).findFirst()
                    .orElseThrow(() -> new ErrnoException(Errno.EADDRNOTAVAIL, "no GID entry for "
                            + c.peer.localGid()));
        }
        id.src = new InetSocketAddress(h.dst(), listener.src.getPort());
        id.dst = new InetSocketAddress(h.src(), h.srcPort());
        id.dgid = c.peer.remoteGid();
        Mtu own = id.dev.portAttr(id.port).activeMtu();
        id.mtu = Mtu.of(Math.min(req.pathMtu(), own.value()));
        id.hopLimit = req.hopLimit();
        id.trafficClass = req.trafficClass();
        ib.remoteQpn = req.localQpn();
        ib.remotePsn = req.startingPsn();
        id.responderResources = req.initiatorDepth();
        id.initiatorDepth = req.responderResources();
        ib.retryCount = req.retryCount();
        ib.rnrRetryCount = req.rnrRetryCount();
        ib.conn = c;
        id.state = IdImpl.State.CONNECT;
        byte[] user = Arrays.copyOfRange(req.priv(), IpHeader.SIZE, CmMessages.REQ_PRIVATE);
        cma.enqueue(id, CmEventType.CONNECT_REQUEST, listener, 0, new ConnParam(user, req.initiatorDepth(),
                req.responderResources(), req.flowControl(), req.retryCount(), req.rnrRetryCount(), req.srq(),
                req.localQpn()));
        cma.cm.prepareMra(c); // cma_ib_req_handler: the id waits on its owner, so a repeated REQ gets an MRA
        return ib;
    }

    /**
     * The INIT attributes {@code cma_ib_init_qp_attr} and {@code cm_init_qp_init_attr} give: P_Key index 0, the
     * port, remote write, and remote read and atomics when the id serves READs.
     */
    static QpAttr initAttr(IdImpl id) {
        return QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(id.port)
                .accessFlags(Access.REMOTE_WRITE | (id.responderResources > 0
                        ? Access.REMOTE_READ | Access.REMOTE_ATOMIC : 0)).build();
    }

    /** {@code ib_cm_init_qp_attr}: the attributes of each transition, in the states the connection gives them. */
    QpAttr qpAttr(QpState to) {
        IbCm.checkInitQpAttr(conn, to);
        return switch (to) {
            case INIT -> initAttr(id);
            case RTR -> QpAttr.builder().state(QpState.RTR)
                    .av(new AhAttr(new GlobalRoute(id.dgid, 0, id.sgid.index(), id.hopLimit, id.trafficClass), 0, 0,
                            0, 0, id.port))
                    .pathMtu(id.mtu).destQpn(remoteQpn).rqPsn(remotePsn).maxDestRdAtomic(id.responderResources)
                    .minRnrTimer(0).build();
            case RTS -> QpAttr.builder().state(QpState.RTS).timeout(CmaImpl.ackTimeout(CmaImpl.IBOE_PACKET_LIFETIME))
                    .retryCnt(retryCount).rnrRetry(rnrRetryCount).sqPsn(id.seqNum).maxRdAtomic(id.initiatorDepth)
                    .build();
            default -> throw new ErrnoException(Errno.EINVAL, "rdma_init_qp_attr: no attributes for " + to);
        };
    }

    /** {@code cma_modify_qp_rtr} then {@code cma_modify_qp_rts}: INIT again with the access flags, RTR, RTS. */
    private void modifyQpToRts() {
        id.qp.modify(qpAttr(QpState.INIT));
        id.qp.modify(qpAttr(QpState.RTR));
        id.qp.modify(qpAttr(QpState.RTS));
    }

    /**
     * {@code cma_accept_ib}: the QP to RTR and RTS, then the REP ({@code ib_send_cm_rep}, EINVAL for private data
     * over its 196 bytes, or a connection no longer in REQ_RCVD); when that fails, {@code rdma_accept}'s
     * {@code reject:} path: the QP to ERR, {@code rdma_reject} (its error dropped, as a REJ the connection refuses
     * sends nothing), and the error thrown.
     */
    void accept(ConnParam p) {
        try {
            if (id.qp != null) {
                modifyQpToRts();
            }
            cma.cm.sendRep(conn, new Rep(conn.localId, conn.remoteId, 0, id.qp != null ? id.qp.qpNum() : p.qpNum(),
                    id.seqNum, p.responderResources(), p.initiatorDepth(), CmaImpl.CA_ACK_DELAY, 0, p.flowControl(),
                    p.rnrRetryCount(), p.srq(), id.dev.nodeGuid(), p.privateData()));
        } catch (RuntimeException e) {
            id.qpToErr();
            try {
                cma.cm.sendRej(conn, RejectReason.CONSUMER_DEFINED, null);
            } catch (ErrnoException x) {
                LOG.debug("rdma_accept's rdma_reject: {}", x.getMessage()); // rdma_accept drops its error
            }
            throw e;
        }
    }

    /**
     * {@code rdma_reject}'s {@code ib_send_cm_rej} with reason 28 (consumer defined), as the connection's state allows
     * ({@link IbCm#sendRej}): a request received, and on the active side a REQ sent (its REJ names no remote ID, so
     * the peer finds nothing it belongs to and its later REP goes unanswered) or a REP received (REJECTED at the peer,
     * its QP to ERR); each leaves the connection IDLE ({@code cm_reset_to_idle}); EINVAL in any other state. The id
     * stays in CONNECT and its QP as it is, as no handler runs for a REJ this side sent.
     */
    void reject(byte[] privateData) {
        cma.cm.sendRej(conn, RejectReason.CONSUMER_DEFINED,
                CmMessages.checkPrivate("rdma_reject: REJ", privateData, CmMessages.REJ_PRIVATE));
    }

    /** {@code rdma_establish} without a QP: the RTU a CONNECT_RESPONSE waits for (REP_RCVD or MRA_REP_SENT). */
    void establish() {
        if (conn.state != IbCm.State.REP_RCVD && conn.state != IbCm.State.MRA_REP_SENT || id.qp != null) {
            throw new ErrnoException(Errno.EINVAL, "rdma_establish: no CONNECT_RESPONSE waits on the id");
        }
        cma.cm.sendRtu(conn, null);
    }

    /**
     * {@code rdma_disconnect}'s CM part, after the QP went to ERR: a DREQ, or else a DREP; in any other state of the
     * connection both are refused and {@code rdma_disconnect} still returns 0 (a rejected request's id, one whose
     * time wait ended).
     */
    void disconnect() {
        if (!cma.cm.sendDreq(conn, null)) {
            cma.cm.sendDrep(conn, null);
        }
    }

    /** {@code rdma_destroy_id}'s {@code ib_destroy_cm_id}. */
    void destroy() {
        cma.cm.destroy(conn);
        conn = null;
    }

    /**
     * {@code cma_ib_handler}: the connection's events as rdma_cm events and QP moves, TIMEWAIT_EXIT only to an id in
     * DISCONNECT and every other event only to one in CONNECT (a REJ after {@code rdma_disconnect}'s DREQ, the id
     * still in CONNECT, is REJECTED; one after DISCONNECTED is dropped). REP_RECEIVED first prepares the MRA
     * ({@code ib_prepare_cm_mra}: MRA_REP_SENT), so a REP repeated before the RTU gets one.
     */
    @Override
    public void cmEvent(IbCm.Conn c, IbCm.Event e, Object msg) {
        IdImpl.State wanted = e == IbCm.Event.TIMEWAIT_EXIT ? IdImpl.State.DISCONNECT : IdImpl.State.CONNECT;
        if (c != conn || id.state != wanted) {
            return;
        }
        switch (e) {
            case REP_RECEIVED -> {
                cma.cm.prepareMra(c); // cma_ib_handler: an MRA for a repeated REP while the RTU is not sent
                repReceived((Rep) msg);
            }
            case RTU_RECEIVED -> id.event(CmEventType.ESTABLISHED, 0, null);
            case MRA_RECEIVED -> {
                // ignored: the CM waits longer for the REP or RTU, the id sees nothing
            }
            case REJ_RECEIVED -> {
                // the QP to ERR and REJECTED, the id left in CONNECT with its ib_cm_id (IDLE, or in time wait after
                // a stale connection's REJ or one once the REP came) until rdma_destroy_id
                Rej rej = (Rej) msg;
                id.qpToErr();
                id.event(CmEventType.REJECTED, rej.reason(), new ConnParam(rej.priv(), 0, 0, 0, 0, 0, false, 0));
            }
            case REQ_ERROR, REP_ERROR -> {
                // UNREACHABLE with -ETIMEDOUT and nothing else; the id stays in CONNECT with its ib_cm_id (IDLE
                // after cm_process_send_error) and its QP as they are, until rdma_destroy_id
                id.event(CmEventType.UNREACHABLE, -Errno.ETIMEDOUT.number(), null);
            }
            case DREQ_RECEIVED, DREP_RECEIVED, DREQ_ERROR -> {
                id.state = IdImpl.State.DISCONNECT;
                id.event(CmEventType.DISCONNECTED, e == IbCm.Event.DREQ_ERROR ? -Errno.ETIMEDOUT.number() : 0, null);
            }
            // cm_timewait_handler leaves the ib_cm_id IDLE; the id keeps it until rdma_destroy_id
            case TIMEWAIT_EXIT -> id.event(CmEventType.TIMEWAIT_EXIT, 0, null);
        }
    }

    /**
     * {@code cma_rep_recv}: RTR, RTS, RTU and ESTABLISHED; without a QP, CONNECT_RESPONSE. When the QP cannot move,
     * the QP to ERR, a REJ (the connection IDLE, {@code cm_reset_to_idle}) and CONNECT_ERROR with the error; the id
     * stays in CONNECT with its ib_cm_id until {@code rdma_destroy_id}.
     */
    private void repReceived(Rep rep) {
        remoteQpn = rep.localQpn();
        remotePsn = rep.startingPsn();
        id.initiatorDepth = Math.min(id.initiatorDepth, rep.responderResources());
        id.responderResources = rep.initiatorDepth();
        rnrRetryCount = rep.rnrRetryCount();
        ConnParam p = new ConnParam(rep.priv(), rep.initiatorDepth(), rep.responderResources(), rep.flowControl(), 0,
                rep.rnrRetryCount(), rep.srq(), rep.localQpn());
        if (id.qp == null) {
            id.event(CmEventType.CONNECT_RESPONSE, 0, p);
            return;
        }
        try {
            modifyQpToRts();
            cma.cm.sendRtu(conn, null);
        } catch (ErrnoException x) {
            LOG.debug("cma_rep_recv: {}", x.getMessage());
            id.qpToErr();
            cma.cm.sendRej(conn, RejectReason.CONSUMER_DEFINED, null);
            id.event(CmEventType.CONNECT_ERROR, -x.errno().number(), null);
            return;
        }
        id.event(CmEventType.ESTABLISHED, 0, p);
    }
}
