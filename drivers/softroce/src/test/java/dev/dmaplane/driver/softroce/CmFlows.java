package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.PortSpace;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WorkCompletion;

import java.lang.foreign.MemorySegment;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The rdma_cm flows the CM tests run on either transport, as a librdmacm client and server run them. */
final class CmFlows {
    private CmFlows() {
    }

    static byte[] text(String s) {
        return s.getBytes(StandardCharsets.US_ASCII);
    }

    /** Whether {@code p} is the GSI datagram of a CM message of attribute {@code attr} ({@code cm_msgs.h}). */
    static boolean isCm(Packet p, int attr) {
        if (p.destQpn() != 1 || p.payload().length() != 256) {
            return false;
        }
        byte[] b = new byte[256];
        p.payload().copyTo(0, MemorySegment.ofArray(b));
        return b[1] == 0x07 && ((b[16] & 0xFF) << 8 | (b[17] & 0xFF)) == attr;
    }

    /** {@code rdma_create_id}, {@code rdma_bind_addr}, {@code rdma_listen}. */
    static CmId listen(CmEnd server, InetSocketAddress at, int backlog) {
        CmId l = server.ch.createId(PortSpace.TCP);
        l.bindAddr(at);
        l.listen(backlog);
        assertEquals("LISTEN", l.state());
        return l;
    }

    /** The client up to ROUTE_RESOLVED from {@code from} (null: as routed), with its resources and QP. */
    static void resolve(CmEnd client, InetSocketAddress from, InetSocketAddress to) {
        CmId id = client.ch.createId(PortSpace.TCP);
        id.resolveAddr(from, to, 2000);
        client.expect(CmEventType.ADDR_RESOLVED);
        id.resolveRoute(2000);
        client.expect(CmEventType.ROUTE_RESOLVED);
        client.resources(id);
        assertEquals(QpState.INIT, client.qp.state(), "rdma_create_qp leaves it in INIT");
    }

    /**
     * Connects {@code client} to the listener {@code listen} of {@code server}: REQ with private data, CONNECT_REQUEST
     * with the REQ's parameters, accept with the server's buffer address and rkey in the REP's private data,
     * ESTABLISHED on both ends with both QPs in RTS. Returns the server's connected id.
     */
    static CmId connect(CmEnd client, CmEnd server, CmId listen, InetSocketAddress from, InetSocketAddress to) {
        resolve(client, from, to);
        client.id.connect(new ConnParam(text("hello from the client"), 2, 3, 1, 6, 5, false, 0));
        CmEvent req = server.expect(CmEventType.CONNECT_REQUEST);
        assertSame(listen, req.listenId());
        CmId conn = req.id();
        ConnParam p = req.param();
        assertEquals("hello from the client", new String(p.privateData(), 0, 21, StandardCharsets.US_ASCII));
        assertEquals(56, p.privateData().length, "a REQ's 92 bytes less the rdma_cm header");
        assertEquals(client.qp.qpNum(), p.qpNum());
        assertEquals(3, p.responderResources(), "the client's initiator depth, as the server sees it");
        assertEquals(2, p.initiatorDepth(), "the client's responder resources");
        assertEquals(6, p.retryCount());
        assertEquals(5, p.rnrRetryCount());
        assertEquals(client.id.localAddr(), conn.remoteAddr(), "the REQ's rdma_cm header names the client");
        assertEquals(to.getPort(), conn.localAddr().getPort());
        server.resources(conn);
        server.qp.postRecv(List.of(RecvWr.of(1, server.sge(4096, 4096))));
        byte[] where = ByteBuffer.allocate(12).putLong(server.buf).putInt(server.mr.rkey()).array();
        conn.accept(new ConnParam(where, 3, 2, 1, 7, 7, false, 0));
        CmEvent est = client.expect(CmEventType.ESTABLISHED);
        assertArrayEquals(where, Arrays.copyOf(est.param().privateData(), 12), "the REP's private data");
        assertEquals(server.qp.qpNum(), est.param().qpNum());
        server.expect(CmEventType.ESTABLISHED);
        assertEquals(QpState.RTS, client.qp.state());
        assertEquals(QpState.RTS, server.qp.state());
        assertEquals(server.qp.qpNum(), client.qp.query().destQpNum());
        assertEquals(client.qp.qpNum(), server.qp.query().destQpNum());
        assertEquals(server.qp.query().rqPsn(), client.qp.query().sqPsn(), "the REQ's starting PSN");
        assertEquals(client.qp.query().rqPsn(), server.qp.query().sqPsn(), "the REP's starting PSN");
        return conn;
    }

    /** An RDMA WRITE to the address and rkey of the REP, then a SEND: every byte where it belongs. */
    static void writeAndSend(CmEnd client, CmEnd server, long seed) {
        byte[] data = Hcas.random(100_000, seed);
        client.write(0, data);
        client.qp.postSend(new SendWr.RdmaWrite(1, List.of(client.sge(0, data.length)), SIGNALED, server.buf + 65536,
                server.mr.rkey()));
        assertTrue(Hcas.one(client.cq).isSuccess());
        assertArrayEquals(data, server.read(65536, data.length));
        client.qp.postSend(new SendWr.Send(2, List.of(client.sge(0, 3000)), SIGNALED, null));
        assertTrue(Hcas.one(client.cq).isSuccess());
        WorkCompletion r = Hcas.one(server.cq);
        assertEquals(WcOpcode.RECV, r.opcode());
        assertEquals(3000, r.byteLen());
        assertArrayEquals(Arrays.copyOf(data, 3000), server.read(4096, 3000));
    }

    /**
     * {@code first} disconnects: DREQ, DISCONNECTED at the other end, whose disconnect sends the DREP; DISCONNECTED
     * at {@code first}, both QPs in ERR, then TIMEWAIT_EXIT at both.
     */
    static void disconnect(CmEnd first, CmEnd second) {
        first.id.disconnect();
        assertEquals(QpState.ERR, first.qp.state(), "rdma_disconnect moves the QP to ERR first");
        second.expect(CmEventType.DISCONNECTED);
        second.id.disconnect();
        assertEquals(QpState.ERR, second.qp.state());
        first.expect(CmEventType.DISCONNECTED);
        first.expect(CmEventType.TIMEWAIT_EXIT);
        second.expect(CmEventType.TIMEWAIT_EXIT);
    }
}
