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
import dev.dmaplane.rdma.spi.IwConnection;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.GidEntry;
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
 * {@code cma_iw_handler}) over the device's {@link IwCm}. The driver's events reach it on the rdma_cm's thread
 * ({@link CmaImpl#iwHandler}), never on the driver's, so no driver lock is ever held under the rdma_cm lock's
 * holder's feet; every method runs under the rdma_cm lock, and the one driver call that may block (a connect's
 * TCP connection) runs outside it ({@link #connecting}).
 */
final class IwId {
    private static final Logger LOG = LoggerFactory.getLogger(IwId.class);

    private final CmaImpl cma;
    private final IdImpl id;
    /** A listening id's listeners, one per iWARP device ({@code cma_listen_on_dev} for a wildcard address). */
    private final Map<RdmaDevice, IwListen> listens = new LinkedHashMap<>();
    /** The request a CONNECT_REQUEST id answers, until it is answered. */
    IwConnRequest request;
    /** The connection after connect or accept (kept after it closed: a disconnect then does nothing). */
    private IwConnection conn;
    /** A failed CONNECT_REPLY came before the connecting task took the lock again: the connection is not kept. */
    private boolean replyFailed;

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
     * resources, as a task the caller runs once it let the rdma_cm lock go (the id is in CONNECT, its QP in RTR).
     * The task blocks while the driver makes its TCP connection; the driver's refusal (ECONNREFUSED from a TCP
     * connection nobody accepts) is thrown to {@code rdma_connect}, and the id goes back to ROUTE_RESOLVED. An id
     * destroyed or removed while the task ran drops the connection it got.
     */
    Runnable connecting(IwConnParam ip, int qpn) {
        IwCm cm = cma.iwCm(id.dev);
        InetSocketAddress to = id.dst;
        IwCmHandler handler = cma.iwHandler(this::event);
        replyFailed = false;
        return () -> {
            IwConnection c;
            try {
                c = cm.connect(qpn, to, ip, handler);
            } catch (RuntimeException e) {
                synchronized (cma.lock) {
                    id.iwConnectFailed();
                }
                throw e;
            }
            synchronized (cma.lock) {
                if (id.state == IdImpl.State.DESTROYING || id.removed) {
                    c.disconnect();
                } else if (!replyFailed) {
                    conn = c;
                }
            }
        };
    }

    /** {@code cma_accept_iw}: {@code iw_cm_accept} of the request with the QP (moved to RTR by the caller). */
    void accept(IwConnParam ip, int qpn) {
        IwConnRequest r = request;
        conn = r.accept(qpn, ip, cma.iwHandler(this::event));
        request = null;
    }

    /**
     * {@code rdma_accept}'s reject after {@code cma_accept_iw} failed: {@code iw_cm_reject} without private data,
     * which sends the MPA reject when the request is still pending and is EINVAL, sending nothing, when the driver's
     * failed accept already ended it ({@code iw_cm_accept} left the iw_cm_id IDLE). The request is answered either way.
     */
    void rejectFailedAccept() {
        rejectAnswered("rdma_accept: the failed accept of {} ended the request already: {}");
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
    }

    boolean connected() {
        return conn != null;
    }

    /** {@code rdma_disconnect} → {@code iw_cm_disconnect}: the stream closed, the QP to ERR by the driver. */
    void disconnect() {
        conn.disconnect();
    }

    /**
     * {@code iw_destroy_cm_id}: listeners closed, a request not answered rejected, a connection dropped (its CLOSE
     * finds the id destroyed and is dropped).
     */
    void destroy() {
        closeListens(null);
        if (request != null) {
            rejectAnswered("iw_destroy_cm_id: the request from {} was gone: {}");
        }
        if (conn != null) {
            conn.disconnect();
        }
    }

    /**
     * {@code cma_iw_handler}: the addresses the connection really has, then CONNECT_REPLY → ESTABLISHED (the event's
     * IRD as initiator depth, its ORD as responder resources: siw signals its own negotiated depths), REJECTED
     * ({@code -ECONNREFUSED}, {@code -ECONNRESET}), UNREACHABLE ({@code -ETIMEDOUT}) or CONNECT_ERROR; the passive
     * side's ESTABLISHED; CLOSE → DISCONNECTED once. DISCONNECT (the peer's half closed) is not reported: CLOSE
     * follows it.
     */
    private void event(IwCmEvent e) {
        if (id.state == IdImpl.State.DESTROYING || id.removed) {
            return;
        }
        if (e.local() != null && e.remote() != null) {
            id.src = e.local();
            id.dst = e.remote();
        }
        switch (e.type()) {
            case CONNECT_REPLY -> connectReply(e);
            case ESTABLISHED -> id.event(CmEventType.ESTABLISHED, 0, param(e));
            case CLOSE -> {
                if (id.state == IdImpl.State.CONNECT) {
                    id.state = IdImpl.State.DISCONNECT;
                    id.event(CmEventType.DISCONNECTED, 0, null);
                }
            }
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
        conn = null;
        replyFailed = true;
        id.state = IdImpl.State.DISCONNECT;
        CmEventType t = switch (s) {
            case ECONNREFUSED, ECONNRESET -> CmEventType.REJECTED;
            case ETIMEDOUT -> CmEventType.UNREACHABLE;
            default -> CmEventType.CONNECT_ERROR;
        };
        // cma_iw_handler takes the depths of a successful reply only: a failure carries the private data alone
        id.event(t, -s.number(), new ConnParam(privateData(e), 0, 0, 0, 0, 0, false, 0));
    }
}
