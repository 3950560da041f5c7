package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.EventChannel;
import dev.dmaplane.rdma.cm.PortSpace;

import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * One end's QPs connected through the rdma_cm, as perftest does with {@code -R} and forces when the device is iWARP
 * (an iWARP QP has no connection but the CM's; {@code perftest_communication.c}'s
 * {@code rdma_cm_server_connection} and {@code rdma_cm_client_connection}): the server end listens on its address
 * and accepts one request per QP, the client resolves from its own address and connects one id per QP, in QP
 * order. Each QP is the id's: made on it with {@code rdma_create_qp} once the id has its device (the client's at
 * ROUTE_RESOLVED, {@code rdma_cm_route_handler}; the server's at CONNECT_REQUEST,
 * {@code rdma_cm_connection_request_handler}, both through {@code create_qp_main}), so that the rdma_cm moves it:
 * INIT when made; on iWARP RTR at connect or accept and RTS by the iw_cm; on RoCE the client's RTR and RTS when the
 * REP comes (then the RTU and ESTABLISHED), the server's RTR and RTS at accept, ESTABLISHED with the RTU. Closing
 * destroys each id's QP ({@code rdma_destroy_qp}) and then the ids ({@code rdma_destroy_id}), as perftest's
 * {@code destroy_ctx} does, which closes the connections.
 */
final class CmConnect implements AutoCloseable {
    /** How long one CM step may take. */
    static final Duration WAIT = Duration.ofSeconds(10);
    /** perftest's {@code responder_resources} and {@code initiator_depth} for RC. */
    private static final int RD_ATOMIC = 16;

    private final EventChannel ch;
    private final Side side;
    private CmId listen;
    /** The id of each connection, in QP order: QP {@code q} of the side is {@code ids.get(q).qp()}. */
    private final List<CmId> ids = new ArrayList<>();

    private CmConnect(RdmaCore core, Side side) {
        this.ch = core.cm().createEventChannel(side.mm);
        this.side = side;
    }

    /**
     * Connects every QP of {@code c} to the same QP of {@code s}, both ends in this process; each side holds its
     * end ({@link Side#cm}) and closes it first.
     */
    static void connect(RdmaCore core, Side c, Side s) {
        CmConnect server = listen(core, s);
        s.cm = server;
        CmConnect client = new CmConnect(core, c);
        c.cm = client;
        for (int q = 0; q < c.qps.length; q++) {
            client.connectOne(q, server.address());
            server.acceptOne(q);
            client.expect(CmEventType.ESTABLISHED); // the rdma_cm moved the id's QP to RTS
            server.expect(CmEventType.ESTABLISHED);
        }
    }

    /** The server end: listening on its address (the IPv4 address of its GID) at a free port. */
    static CmConnect listen(RdmaCore core, Side s) {
        CmConnect server = new CmConnect(core, s);
        try {
            server.listen = server.ch.createId(PortSpace.TCP);
            server.listen.bindAddr(new InetSocketAddress(s.gid.toInetAddress(), 0));
            server.listen.listen(s.qps.length);
            return server;
        } catch (RuntimeException e) {
            server.close();
            throw e;
        }
    }

    /** The address the server end listens on. */
    InetSocketAddress address() {
        return listen.localAddr();
    }

    /**
     * The server end: accepts one request per QP, the QPs in the order the requests come, until every connection is
     * ESTABLISHED. The events of different connections interleave on the channel: over iWARP a connection is
     * ESTABLISHED at the server only once the client's RTR message came, by which time the client, ESTABLISHED at
     * its end, may have sent the next request. So each event is handled by its type, as perftest's
     * {@code rdma_cm_connect_events} hands every event to {@code rdma_cm_events_dispatcher} until no connection is
     * left to make.
     */
    void accept() {
        int requests = 0;
        int established = 0;
        while (established < side.qps.length) {
            CmEvent e = next();
            if (e.type() == CmEventType.CONNECT_REQUEST && requests < side.qps.length) {
                acceptOne(requests++, e);
            } else if (e.type() == CmEventType.ESTABLISHED && established < requests) {
                established++;
            } else {
                throw unexpected(e, requests < side.qps.length ? CmEventType.CONNECT_REQUEST + " or "
                        + CmEventType.ESTABLISHED : CmEventType.ESTABLISHED.toString());
            }
        }
    }

    /** The client end towards the server listening at {@code to}: one connection per QP, in order. */
    static CmConnect connect(RdmaCore core, Side c, InetSocketAddress to) {
        CmConnect client = new CmConnect(core, c);
        try {
            for (int q = 0; q < c.qps.length; q++) {
                client.connectOne(q, to);
                client.expect(CmEventType.ESTABLISHED);
            }
            return client;
        } catch (RuntimeException e) {
            client.close();
            throw e;
        }
    }

    /** {@code rdma_cm_route_handler}: QP {@code q} made on the id once the route is there, then the connect. */
    private void connectOne(int q, InetSocketAddress to) {
        CmId id = ch.createId(PortSpace.TCP);
        ids.add(id);
        id.resolveAddr(new InetSocketAddress(side.gid.toInetAddress(), 0), to, (int) WAIT.toMillis());
        expect(CmEventType.ADDR_RESOLVED);
        id.resolveRoute((int) WAIT.toMillis());
        expect(CmEventType.ROUTE_RESOLVED);
        side.qps[q] = id.createQp(side.pd, side.qpInit);
        id.connect(new ConnParam(null, RD_ATOMIC, RD_ATOMIC, 0, 7, 7, false, 0)); // qp_num: the id's QP
    }

    /** {@code rdma_cm_connection_request_handler}: QP {@code q} made on the request's id, then the accept. */
    private void acceptOne(int q) {
        acceptOne(q, expect(CmEventType.CONNECT_REQUEST));
    }

    /** As {@link #acceptOne(int)}, for the CONNECT_REQUEST {@code request} already taken from the channel. */
    private void acceptOne(int q, CmEvent request) {
        CmId conn = request.id();
        ids.add(conn);
        side.qps[q] = conn.createQp(side.pd, side.qpInit);
        conn.accept(new ConnParam(null, RD_ATOMIC, RD_ATOMIC, 0, 7, 7, false, 0));
    }

    /** The ids of this end's connections, in QP order (each holds its QP). */
    List<CmId> ids() {
        return List.copyOf(ids);
    }

    private CmEvent expect(CmEventType type) {
        CmEvent e = next();
        if (e.type() != type) {
            throw unexpected(e, type.toString());
        }
        return e;
    }

    /** The channel's next event, acknowledged ({@code rdma_get_cm_event}, {@code rdma_ack_cm_event}). */
    private CmEvent next() {
        CmEvent e = ch.getEvent(WAIT);
        e.ack();
        return e;
    }

    private static ErrnoException unexpected(CmEvent e, String expected) {
        return new ErrnoException(e.type() == CmEventType.REJECTED ? Errno.ECONNREFUSED : Errno.EIO,
                "perftest: rdma_cm: " + e.type() + " (status " + e.status() + ") where " + expected + " was expected");
    }

    /**
     * {@code destroy_ctx}: each id's QP ({@code rdma_destroy_qp}), then the ids and the channel (their connections
     * close).
     */
    @Override
    public void close() {
        try {
            for (CmId id : ids) {
                id.destroyQp();
            }
        } finally {
            ch.close();
        }
    }
}
