package dev.dmaplane.rdma.cm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.spi.IwCm;
import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwCmHandler;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwConnRequest;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.GidEntry;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The {@code iw_cm_id} under an rdma_cm id on an iWARP device: the iWARP branches of {@code cma.c}
 * ({@code cma_iw_listen}, {@code cma_connect_iw}, {@code cma_accept_iw}, {@code iw_conn_req_handler},
 * {@code cma_iw_handler}) over {@code iwcm.c}'s state machine ({@code enum iw_cm_state}) and the device's
 * {@link IwCm}. The driver's events reach it on the rdma_cm's thread ({@link CmaImpl#iwHandler}), never on the
 * driver's, so no driver lock is ever held under the rdma_cm lock's holder's feet; every method runs under the
 * rdma_cm lock, and the one driver call that may block (a connect's TCP connection) runs outside it
 * ({@link #connecting}).
 * <p>
 * {@code iw_cm_disconnect} and {@code destroy_cm_id} wait for a connect's or accept's outcome
 * ({@code IWCM_F_CONNECT_WAIT}: the CONNECT_REPLY, or the passive side's ESTABLISHED) before they act, letting the
 * rdma_cm lock go meanwhile so that the outcome can come ({@link #awaitConnectOutcome}). The driver bounds the wait:
 * siw's MPA timer ends a connect whose reply does not come ({@code MPAREQ_TIMEOUT}, CONNECT_REPLY with
 * {@code -ETIMEDOUT}).
 */
final class IwId {
    private static final Logger LOG = LoggerFactory.getLogger(IwId.class);

    /** {@code enum iw_cm_state} ({@code iwcm.h}). */
    enum State { IDLE, LISTEN, CONN_RECV, CONN_SENT, ESTABLISHED, CLOSING, DESTROYING }

    private final CmaImpl cma;
    private final IdImpl id;
    /** A listening id's listeners, one per iWARP device ({@code cma_listen_on_dev} for a wildcard address). */
    private final Map<RdmaDevice, IwListen> listens = new LinkedHashMap<>();
    /** The request a CONNECT_REQUEST id answers, until it is answered. */
    IwConnRequest request;
    private State state = State.IDLE;
    /**
     * The QP of the connection ({@code cm_id_priv->qp}, taken by {@code iw_get_qp} at connect or accept), until
     * CLOSE or a failed CONNECT_REPLY lets it go; null when the device has no QP of the number given.
     */
    private QueuePair qp;
    /**
     * {@code IWCM_F_CONNECT_WAIT}: a connect waits for its CONNECT_REPLY, an accept for its ESTABLISHED (or CLOSE);
     * disconnect and destroy wait until it is clear.
     */
    private boolean connectWait;

    IwId(CmaImpl cma, IdImpl id) {
        this.cma = cma;
        this.id = id;
    }

    /** {@code cma_iw_listen} on {@code d}: a listener on the device's address (or the id's own) at the id's port. */
    void listenOn(RdmaDevice d) {
        if (listens.containsKey(d)) {
            return;
        }
        IwCm cm = cma.iwCm(d);
        InetAddress at = id.src.getAddress().isAnyLocalAddress() ? CmaImpl.v4Of(firstV4(d)) : id.src.getAddress();
        IwListen l = cm.listen(new InetSocketAddress(at, id.src.getPort()), id.backlog,
                cma.iwHandler(e -> listenerEvent(d, e)));
        listens.put(d, l);
        state = State.LISTEN;
    }

    private static GidEntry firstV4(RdmaDevice d) {
        for (GidEntry e : d.gidTable()) {
            if (CmaImpl.isV4Mapped(e.gid().raw())) {
                return e;
            }
        }
        throw new ErrnoException(Errno.EADDRNOTAVAIL, "rdma_listen: " + d.name() + " has no IPv4 address");
    }

    /** {@code destroy_listen} on {@code d} (the device left), or on every device when {@code d} is null. */
    void closeListens(RdmaDevice d) {
        for (Map.Entry<RdmaDevice, IwListen> e : new ArrayList<>(listens.entrySet())) {
            if (d == null || e.getKey() == d) {
                listens.remove(e.getKey());
                e.getValue().close();
            }
        }
    }

    /**
     * {@code iw_conn_req_handler}: a new id for the request, bound to the device that took it, in CONNECT, with
     * CONNECT_REQUEST queued (the peer's ORD is this side's responder resources, its IRD this side's initiator
     * depth). A request the listener cannot take (gone, or its backlog full) is rejected.
     */
    private void listenerEvent(RdmaDevice d, IwCmEvent e) {
        if (e.type() != IwCmEvent.Type.CONNECT_REQUEST) {
            return;
        }
        IwConnRequest req = e.request();
        if (id.state != IdImpl.State.LISTEN || id.removed || id.pendingRequests.get() >= id.backlog) {
            LOG.debug("iw_conn_req_handler: {} refuses the request from {}", id, e.remote());
            req.reject(null);
            return;
        }
        IdImpl child = new IdImpl(cma, id.channel, id.ps);
        child.child = true;
        child.dev = d;
        child.sgid = CmaImpl.gidOf(d, e.local().getAddress());
        child.port = child.sgid == null ? 1 : child.sgid.portNum();
        child.src = e.local();
        child.dst = e.remote();
        child.responderResources = clamp(e.ord());
        child.initiatorDepth = clamp(e.ird());
        child.state = IdImpl.State.CONNECT;
        child.iw().request = req;
        child.iw().state = State.CONN_RECV;
        cma.ids.add(child);
        id.pendingRequests.incrementAndGet();
        cma.enqueue(child, CmEventType.CONNECT_REQUEST, id, 0, param(e));
    }

    private static int clamp(int v) {
        return Math.min(255, Math.max(0, v));
    }

    private static ConnParam param(IwCmEvent e) {
        return new ConnParam(privateData(e), clamp(e.ord()), clamp(e.ird()), 0, 0, 0, false, 0);
    }

    /**
     * The event's private data as the rdma_cm passes it on: {@code struct iw_cm_event}'s {@code private_data_len} is
     * a {@code u8}, which the driver's length is stored into ({@code siw_cm_upcall}: up to 512 bytes of an MPA
     * frame), so the first {@code length mod 256} bytes reach the user ({@code cma_iw_handler},
     * {@code iw_conn_req_handler}).
     */
    private static byte[] privateData(IwCmEvent e) {
        byte[] pd = e.privateData();
        return pd.length <= ConnParam.MAX_PRIVATE_DATA ? pd : Arrays.copyOf(pd, pd.length & 0xFF);
    }

    /**
     * {@code cma_connect_iw}'s {@code iw_cm_connect} with the private data, ORD = initiator depth and IRD = responder
     * resources, as a task the caller runs once it let the rdma_cm lock go (the id is in CONNECT, its QP in RTR; the
     * iw_cm_id in CONN_SENT with QP {@code qpn}, waiting for CONNECT_REPLY). The task blocks while the driver makes its
     * TCP connection; the driver's refusal (ECONNREFUSED from a TCP connection nobody accepts) is thrown to
     * {@code rdma_connect}, the iw_cm_id goes (IDLE, then {@code cma_connect_iw} destroys it) and the id back to
     * ROUTE_RESOLVED. A disconnect or destroy meanwhile waits for the connect's outcome ({@link #connectWait}).
     */
    Runnable connecting(IwConnParam ip, int qpn) {
        IwCm cm = cma.iwCm(id.dev);
        InetSocketAddress to = id.dst;
        IwCmHandler handler = cma.iwHandler(this::event);
        qp = cma.iwQp(id.dev, qpn);
        state = State.CONN_SENT;
        connectWait = true;
        return () -> {
            try {
                cm.connect(qpn, to, ip, handler);
            } catch (RuntimeException e) {
                synchronized (cma.lock) {
                    qp = null;
                    state = State.IDLE;
                    connected();
                    id.iwConnectFailed();
                }
                throw e;
            }
        };
    }

    /**
     * {@code cma_accept_iw}: {@code iw_cm_accept} of the request with the QP (moved to RTR by the caller); the
     * iw_cm_id waits in CONN_RECV for the driver's ESTABLISHED. A failed accept lets the QP go.
     */
    void accept(IwConnParam ip, int qpn) {
        IwConnRequest r = request;
        qp = cma.iwQp(id.dev, qpn);
        connectWait = true;
        try {
            r.accept(qpn, ip, cma.iwHandler(this::event));
        } catch (RuntimeException e) {
            qp = null;
            connected();
            throw e;
        }
        request = null;
    }

    /**
     * {@code rdma_accept}'s reject after {@code cma_accept_iw} failed: {@code iw_cm_reject} without private data,
     * which sends the MPA reject when the request is still pending and is EINVAL, sending nothing, when the driver's
     * failed accept already ended it ({@code iw_cm_accept} left the iw_cm_id IDLE). The request is answered either way.
     */
    void rejectFailedAccept() {
        rejectAnswered("rdma_accept: the failed accept of {} ended the request already: {}");
        state = State.IDLE;
    }

    /**
     * {@code iw_cm_reject} of the pending request without private data, the request answered whether or not the
     * reject could go out: an EINVAL (the driver ended it already) is logged with {@code why}, taking the peer and the
     * message.
     */
    private void rejectAnswered(String why) {
        IwConnRequest r = request;
        request = null;
        try {
            r.reject(null);
        } catch (ErrnoException e) {
            LOG.debug(why, id.dst, e.getMessage());
        }
    }

    /** {@code cma_reject} → {@code iw_cm_reject}: the MPA reply with the reject bit and the private data. */
    void reject(byte[] privateData) {
        IwConnRequest r = request;
        r.reject(privateData);
        request = null;
        state = State.IDLE;
    }

    /**
     * {@code iw_cm_disconnect(cm_id, 0)}, the graceful close {@code rdma_disconnect} asks for on iWARP: after a
     * connect's or accept's outcome came, an ESTABLISHED iw_cm_id goes to CLOSING and its QP to SQD
     * ({@code iwcm_modify_qp_sqd}), whose driver closes the connection (siw's {@code siw_qp_nextstate_from_rts}); the
     * modify's failure is ignored, as the QP may be in SQD or ERR already when both ends disconnect. CLOSE then makes
     * it IDLE. A listener is EINVAL (so is a connection without a QP, after the move to CLOSING); CLOSING (the peer
     * closed first), IDLE (closed, or the connect failed) and CONN_RECV (not answered yet) change nothing. Before a
     * connect's or accept's outcome, the disconnect waits for it and then acts on the state it left.
     */
    void disconnect() {
        awaitConnectOutcome("iw_cm_disconnect");
        switch (state) {
            case ESTABLISHED -> {
                state = State.CLOSING;
                if (qp == null) {
                    throw new ErrnoException(Errno.EINVAL, "iw_cm_disconnect: the connection to " + id.dst
                            + " has no QP");
                }
                modifyQp(QpState.SQD, "iwcm_modify_qp_sqd");
            }
            case LISTEN -> throw new ErrnoException(Errno.EINVAL, "iw_cm_disconnect: the id listens");
            default -> {
            }
        }
    }

    /**
     * {@code destroy_cm_id}: first the wait for a connect's or accept's outcome, then listeners closed; an
     * ESTABLISHED connection closed abruptly, its QP to ERR ({@code iwcm_modify_qp_err}); a CLOSING or IDLE one left
     * as it is (a QP a disconnect moved to SQD stays there); a request not answered rejected. Events that come later
     * are dropped ({@code IWCM_F_DROP_EVENTS}); those of the wait reach the iw_cm_id but not the rdma_cm id, which is
     * DESTROYING already ({@code cma_iw_handler} reports only in CONNECT).
     */
    void destroy() {
        awaitConnectOutcome("destroy_cm_id");
        State was = state;
        state = State.DESTROYING;
        closeListens(null);
        if (request != null) {
            rejectAnswered("iw_destroy_cm_id: the request from {} was gone: {}");
        }
        if (was == State.ESTABLISHED && qp != null) {
            modifyQp(QpState.ERR, "iwcm_modify_qp_err");
        }
        qp = null;
    }

    /**
     * {@code wait_event(cm_id_priv->connect_wait, !test_bit(IWCM_F_CONNECT_WAIT, ...))}: waits, the rdma_cm lock let
     * go, until the connect's or accept's outcome came. Uninterruptible, as {@code wait_event} is (an interrupt is
     * kept for the caller). It does not wait once the rdma_cm is closed (its events are dropped then), nor on the
     * rdma_cm's own thread, which delivers the outcome. Called under the rdma_cm lock.
     */
    private void awaitConnectOutcome(String call) {
        if (!connectWait) {
            return;
        }
        if (cma.onEventThread()) {
            LOG.warn("{} of {} on the rdma_cm's event thread: not waiting for the connect's outcome", call, id);
            return;
        }
        boolean interrupted = false;
        while (connectWait && !cma.isClosed()) {
            try {
                cma.lock.wait();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    /** {@code ib_modify_qp} of the connection's QP to {@code to} by the iw_cm, its failure logged and ignored. */
    private void modifyQp(QpState to, String call) {
        QueuePair q = qp;
        if (q.isDestroyed()) {
            return;
        }
        try {
            q.modify(QpAttr.builder().state(to).build());
        } catch (ErrnoException e) {
            LOG.debug("{} of QP {}: {}", call, q.qpNum(), e.getMessage());
        }
    }

    /** Clears {@code IWCM_F_CONNECT_WAIT} and wakes the waiters ({@code wake_up_all}): the outcome came. */
    private void connected() {
        connectWait = false;
        cma.lock.notifyAll();
    }

    /**
     * The iw_cm's handling of a driver event ({@code cm_event_handler}'s {@code process_event}), then
     * {@code cma_iw_handler}'s for an id in CONNECT: CONNECT_REPLY makes the iw_cm_id ESTABLISHED, or IDLE without its
     * QP when it failed ({@code cm_conn_rep_handler}); the passive side's ESTABLISHED makes it ESTABLISHED
     * ({@code cm_conn_est_handler}); DISCONNECT (the peer's half closed) makes an ESTABLISHED one CLOSING
     * ({@code cm_disconnect_handler}) and is not reported further; CLOSE makes it IDLE without its QP
     * ({@code cm_close_handler}). A destroyed iw_cm_id drops them all.
     */
    private void event(IwCmEvent e) {
        if (state == State.DESTROYING) {
            return;
        }
        switch (e.type()) {
            case CONNECT_REPLY -> {
                if (e.status() == null) {
                    state = State.ESTABLISHED;
                } else {
                    qp = null;
                    state = State.IDLE;
                }
                connected();
            }
            case ESTABLISHED -> {
                state = State.ESTABLISHED;
                connected();
            }
            case DISCONNECT -> {
                if (state == State.ESTABLISHED) {
                    state = State.CLOSING;
                }
            }
            case CLOSE -> {
                qp = null;
                state = State.IDLE;
                connected();
            }
            case CONNECT_REQUEST -> {
            }
        }
        if (id.state == IdImpl.State.CONNECT && !id.removed) {
            report(e);
        }
    }

    /**
     * {@code cma_iw_handler}: the addresses the connection really has, then CONNECT_REPLY → ESTABLISHED (the event's
     * IRD as initiator depth, its ORD as responder resources: siw signals its own negotiated depths), REJECTED
     * ({@code -ECONNREFUSED}, {@code -ECONNRESET}), UNREACHABLE ({@code -ETIMEDOUT}) or CONNECT_ERROR; the passive
     * side's ESTABLISHED; CLOSE → DISCONNECTED (once: the iw_cm_id is IDLE after it). None of them moves the id,
     * which stays in CONNECT, as {@code cma_iw_handler} changes no state (unlike {@code cma_ib_handler}'s DISCONNECT).
     */
    private void report(IwCmEvent e) {
        if (e.local() != null && e.remote() != null) {
            id.src = e.local();
            id.dst = e.remote();
        }
        switch (e.type()) {
            case CONNECT_REPLY -> connectReply(e);
            case ESTABLISHED -> id.event(CmEventType.ESTABLISHED, 0, param(e));
            case CLOSE -> id.event(CmEventType.DISCONNECTED, 0, null);
            case DISCONNECT, CONNECT_REQUEST -> {
            }
        }
    }

    private void connectReply(IwCmEvent e) {
        Errno s = e.status();
        if (s == null) {
            id.event(CmEventType.ESTABLISHED, 0, param(e));
            return;
        }
        CmEventType t = switch (s) {
            case ECONNREFUSED, ECONNRESET -> CmEventType.REJECTED;
            case ETIMEDOUT -> CmEventType.UNREACHABLE;
            default -> CmEventType.CONNECT_ERROR;
        };
        // cma_iw_handler takes the depths of a successful reply only: a failure carries the private data alone
        id.event(t, -s.number(), new ConnParam(privateData(e), 0, 0, 0, 0, 0, false, 0));
    }
}
