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
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.time.Duration;
import java.util.Arrays;

/**
 * The QPs of a run connected through the rdma_cm, as perftest does when the device is iWARP (it forces
 * {@code -R} there: an iWARP QP has no connection but the CM's; {@code perftest_communication.c}'s
 * {@code rdma_cm_client_connection} and {@code rdma_cm_server_connection}): the server end listens on its address,
 * the client resolves and connects one id per QP, each side's QP moved to RTR with {@code rdma_init_qp_attr} and
 * named in the connection parameters ({@code qp_num}); the iw_cm moves both to RTS. Closing destroys the ids, which
 * closes the connections.
 */
final class CmConnect implements AutoCloseable {
    /** How long one CM step may take. */
    static final Duration WAIT = Duration.ofSeconds(10);
    /** perftest's {@code responder_resources} and {@code initiator_depth} for RC ({@code ctx_connect}'s 16 cap). */
    private static final int RD_ATOMIC = 16;

    private final EventChannel client;
    private final EventChannel server;

    private CmConnect(EventChannel client, EventChannel server) {
        this.client = client;
        this.server = server;
    }

    /** Connects every QP of {@code c} to the same QP of {@code s}. */
    static CmConnect connect(RdmaCore core, Perftest.Side c, Perftest.Side s) {
        CmConnect link = new CmConnect(core.cm().createEventChannel(c.mm), core.cm().createEventChannel(s.mm));
        try {
            CmId listen = link.server.createId(PortSpace.TCP);
            listen.bindAddr(new InetSocketAddress(v4(s.gid), 0));
            listen.listen(c.qps.length);
            InetSocketAddress to = listen.localAddr();
            for (int q = 0; q < c.qps.length; q++) {
                CmId id = link.client.createId(PortSpace.TCP);
                id.resolveAddr(new InetSocketAddress(v4(c.gid), 0), to, (int) WAIT.toMillis());
                expect(link.client, CmEventType.ADDR_RESOLVED);
                id.resolveRoute((int) WAIT.toMillis());
                expect(link.client, CmEventType.ROUTE_RESOLVED);
                toRtr(id, c.qps[q]);
                id.connect(new ConnParam(null, RD_ATOMIC, RD_ATOMIC, 0, 7, 7, false, c.qpn(q)));
                CmId conn = expect(link.server, CmEventType.CONNECT_REQUEST).id();
                toRtr(conn, s.qps[q]);
                conn.accept(new ConnParam(null, RD_ATOMIC, RD_ATOMIC, 0, 7, 7, false, s.qpn(q)));
                expect(link.client, CmEventType.ESTABLISHED);
                expect(link.server, CmEventType.ESTABLISHED);
            }
            return link;
        } catch (RuntimeException e) {
            link.close();
            throw e;
        }
    }

    /** {@code rdma_init_qp_attr} for INIT and RTR, as a user moves a QP the rdma_cm did not make. */
    private static void toRtr(CmId id, QueuePair qp) {
        qp.modify(id.initQpAttr(QpState.INIT));
        qp.modify(id.initQpAttr(QpState.RTR));
    }

    private static CmEvent expect(EventChannel ch, CmEventType type) {
        CmEvent e = ch.getEvent(WAIT);
        e.ack();
        if (e.type() != type) {
            throw new ErrnoException(e.type() == CmEventType.REJECTED ? Errno.ECONNREFUSED : Errno.EIO,
                    "perftest: rdma_cm: " + e.type() + " (status " + e.status() + ") where " + type
                            + " was expected");
        }
        return e;
    }

    /** The IPv4 address of a RoCEv2-style GID (::ffff:a.b.c.d), which an iWARP device's table holds too. */
    static InetAddress v4(Gid gid) {
        try {
            return InetAddress.getByAddress(Arrays.copyOfRange(gid.raw(), 12, 16));
        } catch (UnknownHostException e) {
            throw new ErrnoException(Errno.EINVAL, "perftest: GID " + gid + " has no IPv4 address", e);
        }
    }

    /** Destroys the ids (their connections close, the QPs go to ERR) and the channels. */
    @Override
    public void close() {
        try {
            client.close();
        } finally {
            server.close();
        }
    }
}
