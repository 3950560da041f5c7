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
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;

import java.net.InetSocketAddress;
import java.time.Duration;

/**
 * One end's QPs connected through the rdma_cm, as perftest does with {@code -R} and forces when the device is iWARP
 * (an iWARP QP has no connection but the CM's; {@code perftest_communication.c}'s
 * {@code rdma_cm_server_connection} and {@code rdma_cm_client_connection}): the server end listens on its address
 * and accepts one request per QP, the client resolves from its own address and connects one id per QP, in QP
 * order; each QP is named in the connection parameters ({@code qp_num}) and moved with {@code rdma_init_qp_attr}.
 * On iWARP the QP goes to RTR before connect or accept and the iw_cm moves it to RTS. On RoCE (IB CM MADs) the
 * client's QP goes to INIT before connect, to RTR and RTS on CONNECT_RESPONSE, which {@code rdma_establish}
 * answers with the RTU; the server's goes to RTR and RTS from the REQ before it accepts, ESTABLISHED follows the
 * RTU. Closing destroys the ids, which closes the connections.
 */
final class CmConnect implements AutoCloseable {
    /** How long one CM step may take. */
    static final Duration WAIT = Duration.ofSeconds(10);
    /** perftest's {@code responder_resources} and {@code initiator_depth} for RC. */
    private static final int RD_ATOMIC = 16;

    private final EventChannel ch;
    private final Perftest.Side side;
    private CmId listen;

    private CmConnect(RdmaCore core, Perftest.Side side) {
        this.ch = core.cm().createEventChannel(side.mm);
        this.side = side;
    }

    /**
     * Connects every QP of {@code c} to the same QP of {@code s}, both ends in this process; each side holds its
     * end ({@link Perftest.Side#cm}) and closes it first.
     */
    static void connect(RdmaCore core, Perftest.Side c, Perftest.Side s) {
        CmConnect server = listen(core, s);
        s.cm = server;
        CmConnect client = new CmConnect(core, c);
        c.cm = client;
        for (int q = 0; q < c.qps.length; q++) {
            CmId id = client.connectOne(q, server.address());
            server.acceptOne(q);
            client.established(id, q);
            server.expect(CmEventType.ESTABLISHED);
        }
    }

    /** The server end: listening on its address (the IPv4 address of its GID) at a free port. */
    static CmConnect listen(RdmaCore core, Perftest.Side s) {
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

    /** The server end: takes one request per QP, in order, and accepts it with that QP. */
    void accept() {
        for (int q = 0; q < side.qps.length; q++) {
            acceptOne(q);
            expect(CmEventType.ESTABLISHED);
        }
    }

    /** The client end towards the server listening at {@code to}: one connection per QP, in order. */
    static CmConnect connect(RdmaCore core, Perftest.Side c, InetSocketAddress to) {
        CmConnect client = new CmConnect(core, c);
        try {
            for (int q = 0; q < c.qps.length; q++) {
                client.established(client.connectOne(q, to), q);
            }
            return client;
        } catch (RuntimeException e) {
            client.close();
            throw e;
        }
    }

    private CmId connectOne(int q, InetSocketAddress to) {
        CmId id = ch.createId(PortSpace.TCP);
        id.resolveAddr(new InetSocketAddress(side.gid.toInetAddress(), 0), to, (int) WAIT.toMillis());
        expect(CmEventType.ADDR_RESOLVED);
        id.resolveRoute((int) WAIT.toMillis());
        expect(CmEventType.ROUTE_RESOLVED);
        QueuePair qp = side.qps[q];
        qp.modify(id.initQpAttr(QpState.INIT));
        if (side.iwarp) {
            qp.modify(id.initQpAttr(QpState.RTR));
        }
        id.connect(new ConnParam(null, RD_ATOMIC, RD_ATOMIC, 0, 7, 7, false, side.qpn(q)));
        return id;
    }

    /**
     * The client's connection of QP {@code q} comes up: ESTABLISHED on iWARP; on RoCE CONNECT_RESPONSE, the QP to
     * RTR and RTS from the REP, and the RTU ({@code rdma_establish}).
     */
    private void established(CmId id, int q) {
        if (side.iwarp) {
            expect(CmEventType.ESTABLISHED);
            return;
        }
        expect(CmEventType.CONNECT_RESPONSE);
        QueuePair qp = side.qps[q];
        qp.modify(id.initQpAttr(QpState.RTR));
        qp.modify(id.initQpAttr(QpState.RTS));
        id.establish();
    }

    private void acceptOne(int q) {
        CmId conn = expect(CmEventType.CONNECT_REQUEST).id();
        QueuePair qp = side.qps[q];
        qp.modify(conn.initQpAttr(QpState.INIT));
        qp.modify(conn.initQpAttr(QpState.RTR));
        if (!side.iwarp) {
            qp.modify(conn.initQpAttr(QpState.RTS));
        }
        conn.accept(new ConnParam(null, RD_ATOMIC, RD_ATOMIC, 0, 7, 7, false, side.qpn(q)));
    }

    private CmEvent expect(CmEventType type) {
        CmEvent e = ch.getEvent(WAIT);
        e.ack();
        if (e.type() != type) {
            throw new ErrnoException(e.type() == CmEventType.REJECTED ? Errno.ECONNREFUSED : Errno.EIO,
                    "perftest: rdma_cm: " + e.type() + " (status " + e.status() + ") where " + type
                            + " was expected");
        }
        return e;
    }

    /** Destroys the ids (their connections close, the QPs go to ERR) and the channel. */
    @Override
    public void close() {
        ch.close();
    }
}
