package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.EventChannel;
import dev.dmaplane.rdma.cm.PortSpace;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.Eventually;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.DataInputStream;
import java.lang.foreign.MemorySegment;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The rdma_cm over iWARP between two machines joined by nothing but the loopback's TCP, as
 * {@code drivers/infiniband/core/cma.c} runs its iWARP branches ({@code cma_iw_listen}, {@code cma_connect_iw},
 * {@code cma_accept_iw}, {@code iw_conn_req_handler}, {@code cma_iw_handler}) over {@code iwcm.c} and
 * {@code siw_cm.c}, and as rdma_cm(7), rdma_connect(3), rdma_accept(3), rdma_reject(3) and rdma_disconnect(3)
 * describe it: address resolution picks the siw device of the address, the QP goes INIT → RTR by the rdma_cm and
 * RTS by the iw_cm (no RTR/RTS by the user), private data travels in the MPA request and reply, a reject is
 * REJECTED with {@code -ECONNRESET} (siw's CONNECT_REPLY status, which {@code cma_iw_handler} passes on), a
 * disconnect from either side (its QP to SQD, the peer's to ERR) is DISCONNECTED at both, and an unplugged device
 * is DEVICE_REMOVAL.
 */
@Timeout(60)
class SiwRdmaCmTest {
    private static final int PORT = 7471;
    private final CmEnds ends = new CmEnds(45, 46, PORT);
    private final SiwHosts h = ends.h;
    private final End client = ends.client;
    private final End server = ends.server;

    @AfterEach
    void close() {
        ends.close();
        assertEquals(0, Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().equals("ib_cm") && t.isAlive()).count(), "no CM thread left");
    }

    /** An rdma_cm application on one machine: its event channel, an id and, once bound, its resources and QP. */
    static final class End implements AutoCloseable {
        final AddressSpace mm;
        final EventChannel ch;
        CmId id;
        ProtectionDomain pd;
        CompletionQueue cq;
        long buf;
        MemoryRegion mr;
        QueuePair qp;

        End(Machine m, RdmaCore core, String name) {
            mm = m.newAddressSpace(name);
            ch = core.cm().createEventChannel(mm);
        }

        CmEvent expect(CmEventType t) {
            CmEvent e = ch.getEvent(SiwHosts.WAIT);
            assertEquals(t, e.type(), e.toString());
            e.ack();
            return e;
        }

        /** PD, CQ, a registered buffer and {@code on}'s RC QP ({@code rdma_create_qp}). */
        void resources(CmId on) {
            id = on;
            pd = on.verbs().allocPd();
            cq = on.verbs().createCq(1024, null, 0);
            buf = mm.mmapAnonymous(SiwHosts.BUF, Prot.PROT_READ | Prot.PROT_WRITE);
            mr = pd.regMr(buf, SiwHosts.BUF, SiwHosts.ALL);
            qp = on.createQp(pd, new QpInitAttr(cq, cq, null, new QpCap(64, 64, 1, 1, 0), QpType.RC, false));
        }

        Sge sge(long off, long len) {
            return new Sge(buf + off, len, mr.lkey());
        }

        void write(long off, byte[] b) {
            mm.write(buf + off, MemorySegment.ofArray(b));
        }

        byte[] read(long off, int len) {
            byte[] b = new byte[len];
            mm.read(buf + off, MemorySegment.ofArray(b));
            return b;
        }

        @Override
        public void close() {
            ch.close();
            if (!mm.isClosed()) {
                mm.close();
            }
        }
    }

    private static InetSocketAddress at(InetAddress a, int port) {
        return new InetSocketAddress(a, port);
    }

    private CmId listen(InetAddress on) {
        CmId l = server.ch.createId(PortSpace.TCP);
        l.bindAddr(at(on, PORT));
        l.listen(4);
        assertEquals("LISTEN", l.state());
        return l;
    }

    /** The client to ROUTE_RESOLVED towards the server's siw address, with its QP in INIT. */
    private void resolve() {
        CmId id = client.ch.createId(PortSpace.TCP);
        id.resolveAddr(null, at(h.b.address, PORT), 2000);
        client.expect(CmEventType.ADDR_RESOLVED);
        assertEquals("siw0", id.verbs().deviceName(), "the device whose netdev has the route");
        assertEquals(h.a.address, id.localAddr().getAddress(), "siw0's address on the client machine");
        id.resolveRoute(2000);
        client.expect(CmEventType.ROUTE_RESOLVED);
        client.resources(id);
        assertEquals(QpState.INIT, client.qp.state(), "rdma_create_qp leaves it in INIT");
    }

    /**
     * Connect with private data in the MPA request, CONNECT_REQUEST on the listener, accept with the server's
     * buffer address and rkey in the MPA reply, ESTABLISHED at both ends with both QPs in RTS. MPA v2 carries the
     * READ depths: the client asks to have 8 READs outstanding and serves 4, the server may have 2 and serves 16,
     * which becomes the client's ORD (siw's {@code relaxed_ird_negotiation}). CONNECT_REQUEST carries the client's
     * ORD as responder resources and its IRD as initiator depth ({@code iw_conn_req_handler}); ESTABLISHED carries
     * what {@code siw_cm_upcall} signals, the side's own negotiated {@code cep->ord} and {@code cep->ird}, which
     * {@code cma_iw_handler} makes responder resources (the event's ORD) and initiator depth (its IRD): the client's
     * 16 and 2, the server's 2 and 16.
     */
    private CmId connect(CmId l) {
        resolve();
        return connectResolved(l);
    }

    /**
     * {@link #connect} from ROUTE_RESOLVED on. {@code cma_connect_iw} runs {@code cma_modify_qp_rtr} (INIT, then
     * RTR) before {@code iw_cm_connect}; siw takes both and leaves its QP IDLE ({@code siw_verbs_modify_qp} maps
     * INIT to IDLE and RTR to RTR, {@code siw_qp_nextstate_from_idle} acts on RTS and ERROR only), which
     * {@code siw_query_qp} reports as INIT ({@code siw_qp_state_to_ib_qp_state}).
     */
    private CmId connectResolved(CmId l) {
        client.id.connect(ConnParam.of(new byte[]{'h', 'i'}, 4, 8));
        assertEquals(QpState.INIT, client.qp.state(), "siw ignores cma_modify_qp_rtr's RTR: its QP stays IDLE");
        CmEvent req = server.expect(CmEventType.CONNECT_REQUEST);
        assertSame(l, req.listenId());
        CmId conn = req.id();
        assertArrayEquals(new byte[]{'h', 'i'}, req.param().privateData(), "the MPA request's private data");
        assertEquals(List.of(8, 4), List.of(req.param().responderResources(), req.param().initiatorDepth()),
                "the client's ORD and IRD");
        assertEquals("siw0", conn.verbs().deviceName());
        assertEquals(at(h.b.address, PORT), conn.localAddr());
        assertEquals(h.a.address, conn.remoteAddr().getAddress());
        server.resources(conn);
        server.qp.postRecv(List.of(RecvWr.of(1, server.sge(0, 4096))));
        byte[] where = ByteBuffer.allocate(12).putLong(server.buf).putInt(server.mr.rkey()).array();
        conn.accept(ConnParam.of(where, 16, 2));
        CmEvent est = client.expect(CmEventType.ESTABLISHED);
        assertArrayEquals(where, est.param().privateData(), "the MPA reply's private data");
        assertEquals(List.of(16, 2), List.of(est.param().responderResources(), est.param().initiatorDepth()),
                "the client's own ORD (the server's IRD 16, at least the client's ORD 8) and IRD (the server's ORD 2)");
        CmEvent serverEst = server.expect(CmEventType.ESTABLISHED);
        assertEquals(List.of(2, 16), List.of(serverEst.param().responderResources(),
                serverEst.param().initiatorDepth()), "the server's own ORD min(2, 4) and IRD max(16, 8)");
        assertEquals(QpState.RTS, client.qp.state(), "the iw_cm moved it to RTS");
        assertEquals(QpState.RTS, server.qp.state());
        assertEquals(client.id.localAddr(), conn.remoteAddr(), "the TCP connection's own addresses");
        return conn;
    }

    /**
     * A 1 MiB RDMA WRITE, then a SEND behind it, then a 1 MiB RDMA READ: every byte where it belongs. On iWARP a
     * WRITE completes once TCP took its bytes, so the WRITE's bytes are read at the server once the SEND that
     * follows it arrived (RFC 5040 5.5: messages are placed in order).
     */
    private void dataCrosses() {
        byte[] data = SiwHosts.random(1 << 20, 2);
        client.write(0, data);
        client.qp.postSend(new SendWr.RdmaWrite(1, List.of(client.sge(0, data.length)), SIGNALED,
                server.buf + (1 << 20), server.mr.rkey()));
        byte[] msg = SiwHosts.random(3000, 1);
        client.write(3 << 20, msg);
        client.qp.postSend(new SendWr.Send(2, List.of(client.sge(3 << 20, msg.length)), SIGNALED, null));
        List<WorkCompletion> sent = SiwHosts.poll(client.cq, 2);
        assertTrue(sent.stream().allMatch(WorkCompletion::isSuccess), sent.toString());
        WorkCompletion r = SiwHosts.one(server.cq);
        assertEquals(WcOpcode.RECV, r.opcode());
        assertEquals(msg.length, r.byteLen());
        assertArrayEquals(msg, server.read(0, msg.length));
        assertArrayEquals(data, server.read(1 << 20, data.length));

        byte[] back = SiwHosts.random(1 << 20, 3);
        server.write(2 << 20, back);
        client.qp.postSend(new SendWr.RdmaRead(3, List.of(client.sge(2 << 20, back.length)), SIGNALED,
                server.buf + (2 << 20), server.mr.rkey()));
        WorkCompletion rd = SiwHosts.one(client.cq);
        assertTrue(rd.isSuccess(), rd.toString());
        assertArrayEquals(back, client.read(2 << 20, back.length));
    }

    @Test
    void connectAcceptDataAndDisconnectFromTheClient() {
        CmId l = listen(h.b.address);
        CmId conn = connect(l);
        dataCrosses();
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> client.id.reject(null)).errno(),
                "rdma_reject on the active id: iw_cm_reject is EINVAL outside CONN_RECV");
        client.id.disconnect();
        assertEquals(QpState.SQD, client.qp.state(), "iw_cm_disconnect(cm_id, 0): the QP to SQD, siw's CLOSING");
        client.expect(CmEventType.DISCONNECTED);
        server.expect(CmEventType.DISCONNECTED);
        assertEquals(QpState.ERR, server.qp.state(), "the peer's close flushes the server's QP");
        conn.disconnect();
        assertEquals("CONNECT", conn.state(), "cma_iw_handler moves no id");
        client.id.destroy();
        conn.destroy();
        l.destroy();
        assertEquals(0, h.ca.cm().ids().size() + h.cb.cm().ids().size(), "no id left");
    }

    @Test
    void aWildcardListenerTakesTheRequestAndTheServerDisconnects() {
        CmId l = listen(new InetSocketAddress(0).getAddress());
        CmId conn = connect(l);
        dataCrosses();
        conn.disconnect();
        assertEquals(QpState.SQD, server.qp.state());
        server.expect(CmEventType.DISCONNECTED);
        client.expect(CmEventType.DISCONNECTED);
        assertEquals(QpState.ERR, client.qp.state());
    }

    /**
     * {@code siw_proc_mpareply} reports the reply with the reject bit as CONNECT_REPLY {@code -ECONNRESET};
     * {@code cma_iw_handler} makes that REJECTED and copies the status and private data into the event
     * ({@code event.status = iw_event->status}; rdma_get_cm_event(3) names the IB CM's reason only under
     * InfiniBand), and siw's release leaves the QP in ERR.
     */
    @Test
    void aRejectIsRejectedWithEconnresetAndThePrivateData() {
        CmId l = listen(h.b.address);
        resolve();
        client.id.connect(ConnParam.of(new byte[]{1}, 1, 1));
        CmEvent req = server.expect(CmEventType.CONNECT_REQUEST);
        req.id().reject(new byte[]{'n', 'o'});
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> req.id().accept(ConnParam.of(null, 1,
                1))).errno(), "answered already");
        CmEvent rej = client.expect(CmEventType.REJECTED);
        assertEquals(-Errno.ECONNRESET.number(), rej.status(), "cma_iw_handler passes siw's status on");
        assertArrayEquals(new byte[]{'n', 'o'}, rej.param().privateData());
        assertEquals(Errno.ETIMEDOUT, assertThrows(ErrnoException.class,
                () -> client.ch.getEvent(Duration.ofMillis(200))).errno(), "nothing after REJECTED");
        assertEquals(QpState.ERR, client.qp.state(), "siw's release moved the QP of the rejected connect to ERR");
        l.destroy();
    }

    /**
     * An MPA v2 reply the client's siw answers with a TERMINATE (here an ORD beyond any IRD siw has): the iw_cm's
     * CONNECT_REPLY with {@code -EINVAL} ({@code siw_proc_mpareply}) is CONNECT_ERROR with status {@code -EINVAL} at
     * the rdma_cm ({@code cma_iw_handler}: neither a reset, a refusal nor a timeout) without depths, and the id's QP
     * is in ERR.
     */
    @Test
    void aReplyTheClientTerminatesIsConnectErrorWithEinval() throws Exception {
        try (ServerSocket raw = new ServerSocket(PORT, 1, h.b.address)) {
            byte[] after = rawServer(raw, Mpa.frame(true, false, Mpa.REVISION_2, new Mpa.V2(4, 200, false, 0),
                    new byte[0]));
            assertEquals(new Terminate(Terminate.LAYER_LLP, Terminate.LLP_MPA, Terminate.LLP_INSUFFICIENT_IRD),
                    SiwMpaTerminateTest.terminate(after));
            CmEvent e = client.expect(CmEventType.CONNECT_ERROR);
            assertEquals(-Errno.EINVAL.number(), e.status());
            assertEquals(List.of(0, 0), List.of(e.param().responderResources(), e.param().initiatorDepth()),
                    "cma_iw_handler sets the depths of a successful reply only");
            assertEquals(QpState.ERR, client.qp.state());
        }
    }

    /**
     * More private data than a {@code u8} counts, from a peer that sends it (an MPA reply holds up to 512 bytes):
     * {@code siw_cm_upcall} stores the length into {@code struct iw_cm_event}'s {@code u8 private_data_len}, so the
     * rdma_cm's ESTABLISHED ({@code cma_iw_handler}) carries the first 300 mod 256 = 44 bytes.
     */
    @Test
    void aReplyWithMorePrivateDataThanAU8CountsReachesTheUserCutToItsLength() throws Exception {
        try (ServerSocket raw = new ServerSocket(PORT, 1, h.b.address)) {
            resolve();
            client.id.connect(ConnParam.of(new byte[]{'h', 'i'}, 4, 8));
            byte[] pd = SiwHosts.random(300, 6);
            try (Socket s = raw.accept()) {
                s.setSoTimeout(10_000);
                new DataInputStream(s.getInputStream()).readFully(new byte[Mpa.RR_HDR + Mpa.V2_DATA + 2]);
                s.getOutputStream().write(Mpa.frame(true, false, Mpa.REVISION_2, new Mpa.V2(8, 4, false, 0), pd));
                CmEvent est = client.expect(CmEventType.ESTABLISHED);
                assertArrayEquals(Arrays.copyOf(pd, 44), est.param().privateData());
            }
            client.expect(CmEventType.DISCONNECTED);
        }
    }

    /**
     * A raw server answers the client's MPA v2 request (with its 2 bytes of private data) with {@code reply} and hands
     * back what the client sends after it until the client closes.
     */
    private byte[] rawServer(ServerSocket raw, byte[] reply) throws Exception {
        resolve();
        client.id.connect(ConnParam.of(new byte[]{'h', 'i'}, 4, 8));
        try (Socket s = raw.accept()) {
            s.setSoTimeout(10_000);
            DataInputStream in = new DataInputStream(s.getInputStream());
            in.readFully(new byte[Mpa.RR_HDR + Mpa.V2_DATA + 2]);
            s.getOutputStream().write(reply);
            return in.readAllBytes();
        }
    }

    /**
     * A revision 2 reply with the H flag and no private data, too short for {@code struct mpa_v2_data}:
     * {@code siw_proc_mpareply} has no length check there and reads the words from a buffer the reply never filled;
     * siw refuses it as that function refuses a reply it cannot read ({@code out_err}): CONNECT_REPLY {@code -EINVAL}
     * without a TERMINATE, which {@code cma_iw_handler} makes CONNECT_ERROR with status {@code -EINVAL} and no
     * depths, and the id's QP in ERR (the endpoint's release, {@code siw_qp_llp_close}).
     */
    @Test
    void aV2ReplyTooShortForIrdAndOrdIsConnectErrorWithEinval() throws Exception {
        try (ServerSocket raw = new ServerSocket(PORT, 1, h.b.address)) {
            byte[] rep = Mpa.frame(true, false, Mpa.REVISION_2, null, new byte[0]);
            rep[16] |= (byte) Mpa.FLAG_ENHANCED;
            assertEquals(0, rawServer(raw, rep).length, "nothing but the close");
            CmEvent e = client.expect(CmEventType.CONNECT_ERROR);
            assertEquals(-Errno.EINVAL.number(), e.status());
            assertEquals(List.of(0, 0), List.of(e.param().responderResources(), e.param().initiatorDepth()));
            assertEquals(QpState.ERR, client.qp.state());
        }
    }

    /**
     * A reply with the request's key: {@code siw_proc_mpareply} sends a TERMINATE with
     * {@code LLP_ECODE_INVALID_REQ_RESP} and reports {@code -EINVAL}, CONNECT_ERROR at the rdma_cm
     * ({@code cma_iw_handler}'s default), the id's QP in ERR.
     */
    @Test
    void aReplyWithTheWrongKeyIsConnectErrorWithEinval() throws Exception {
        try (ServerSocket raw = new ServerSocket(PORT, 1, h.b.address)) {
            byte[] rep = Mpa.frame(true, false, Mpa.REVISION_2, new Mpa.V2(4, 4, false, 0), new byte[0]);
            System.arraycopy(Mpa.REQ_KEY, 0, rep, 0, 16);
            assertEquals(new Terminate(Terminate.LAYER_LLP, Terminate.LLP_MPA, Terminate.LLP_INVALID_REQ_RESP),
                    SiwMpaTerminateTest.terminate(rawServer(raw, rep)));
            CmEvent e = client.expect(CmEventType.CONNECT_ERROR);
            assertEquals(-Errno.EINVAL.number(), e.status());
            assertEquals(QpState.ERR, client.qp.state());
        }
    }

    /**
     * A reply asking for markers: {@code siw_proc_mpareply} reports {@code -ECONNREFUSED} without a TERMINATE, which
     * {@code cma_iw_handler} makes REJECTED; the id's QP is in ERR (the endpoint's release, {@code siw_qp_llp_close}).
     */
    @Test
    void aReplyAskingForMarkersIsRejectedWithEconnrefused() throws Exception {
        try (ServerSocket raw = new ServerSocket(PORT, 1, h.b.address)) {
            byte[] rep = Mpa.frame(true, false, Mpa.REVISION_2, new Mpa.V2(4, 4, false, 0), new byte[0]);
            rep[16] |= (byte) Mpa.FLAG_MARKERS;
            assertEquals(0, rawServer(raw, rep).length, "nothing but the close");
            CmEvent e = client.expect(CmEventType.REJECTED);
            assertEquals(-Errno.ECONNREFUSED.number(), e.status());
            assertEquals(QpState.ERR, client.qp.state());
        }
    }

    /**
     * Nobody listens: {@code siw_connect}'s blocking {@code kernel_bindconnect} fails, {@code iw_cm_connect} and
     * {@code cma_connect_iw} return {@code -ECONNREFUSED}, and {@code rdma_connect} ({@code cma.c},
     * {@code err_state}) puts the id back to ROUTE_RESOLVED: rdma_connect(3) fails with ECONNREFUSED, no event
     * comes, and the QP is IDLE as before, INIT to a query ({@code cma_modify_qp_rtr}'s INIT and RTR are no-ops on an
     * IDLE siw QP: {@code siw_qp_nextstate_from_idle}; {@code siw_query_qp}).
     */
    @Test
    void aConnectNobodyListensForFailsWithEconnrefusedAndTheIdIsRouteResolvedAgain() {
        resolve();
        ErrnoException e = assertThrows(ErrnoException.class, () -> client.id.connect(ConnParam.of(null, 1, 1)));
        assertEquals(Errno.ECONNREFUSED, e.errno());
        assertEquals("ROUTE_RESOLVED", client.id.state());
        assertEquals(QpState.INIT, client.qp.state());
        assertEquals(Errno.ETIMEDOUT, assertThrows(ErrnoException.class,
                () -> client.ch.getEvent(Duration.ofMillis(50))).errno(), "no event");
    }

    /**
     * The same id and QP connect again once a listener exists, as on Linux: {@code rdma_connect} from ROUTE_RESOLVED
     * runs {@code cma_connect_iw} again, whose {@code cma_modify_qp_rtr} moves the QP to INIT and RTR once more,
     * which siw accepts on its IDLE QP and ignores ({@code siw_verbs_modify_qp}, {@code siw_qp_nextstate_from_idle}
     * in {@code siw_qp.c}), so {@code iw_cm_connect} finds the QP unconnected and IDLE ({@code siw_connect}); the
     * connection is established and carries data, every byte checked.
     */
    @Test
    void aConnectRefusedThenRetriedOnceSomeoneListensConnectsAndMovesData() {
        resolve();
        assertEquals(Errno.ECONNREFUSED, assertThrows(ErrnoException.class,
                () -> client.id.connect(ConnParam.of(null, 1, 1))).errno(), "nobody listens yet");
        assertEquals("ROUTE_RESOLVED", client.id.state());
        CmId l = listen(h.b.address);
        connectResolved(l);
        dataCrosses();
    }

    /**
     * {@code siw_connect} makes its TCP connection blocking, and {@code rdma_connect} holds only that id's
     * {@code handler_mutex} meanwhile ({@code cma.c}): a connect that waits for a peer whose accept queue is full
     * (its SYNs dropped, {@code tcp_conn_request}) stalls no other id of the same rdma_cm. Once the peer closes,
     * the retried SYN is refused and the connect fails with ECONNREFUSED, the id ROUTE_RESOLVED again.
     */
    @Test
    @Timeout(60)
    void aConnectThatWaitsForItsTcpConnectionStallsNoOtherId() throws Exception {
        resolve();
        ServerSocket full = new ServerSocket(PORT, 1, h.b.address);
        List<Socket> queued = new ArrayList<>();
        Thread connecting = null;
        try {
            while (queued.size() < 8) { // fill the accept queue: the next SYN is dropped, its connect waits
                Socket s = new Socket();
                queued.add(s);
                try {
                    s.connect(at(h.b.address, PORT), 300);
                } catch (SocketTimeoutException e) {
                    break;
                }
            }
            assertTrue(queued.size() < 8, "the accept queue of backlog 1 filled");
            ErrnoException[] failed = new ErrnoException[1];
            connecting = new Thread(() -> failed[0] = assertThrows(ErrnoException.class,
                    () -> client.id.connect(ConnParam.of(null, 1, 1))), "rdma_connect");
            connecting.start();
            Thread waiting = connecting;
            Eventually.eventually(() -> "CONNECT".equals(client.id.state()) && waiting.isAlive(), SiwHosts.WAIT,
                    "rdma_connect waits for its TCP connection");

            CmId other = client.ch.createId(PortSpace.TCP);
            other.resolveAddr(null, at(h.b.address, PORT + 1), 2000);
            client.expect(CmEventType.ADDR_RESOLVED);
            assertTrue(connecting.isAlive(), "the other id resolved while the connect still waited");
            other.destroy();

            full.close();
            connecting.join(SiwHosts.WAIT.toMillis());
            assertEquals(Thread.State.TERMINATED, connecting.getState(), "the retried SYN was refused");
            assertEquals(Errno.ECONNREFUSED, failed[0].errno());
            assertEquals("ROUTE_RESOLVED", client.id.state());
        } finally {
            full.close();
            for (Socket s : queued) {
                s.close();
            }
            if (connecting != null) {
                connecting.join(SiwHosts.WAIT.toMillis());
            }
        }
    }

    /**
     * The rdma_cm's private data is at most 255 bytes: {@code private_data_len} is a {@code u8} in librdmacm's and
     * the kernel's {@code struct rdma_conn_param} and in {@code rdma_reject}, so 256 bytes cannot be given (EINVAL
     * here, before anything moves), while on iWARP the 255 travel whole: {@code cma_connect_iw} and
     * {@code cma_accept_iw} hand them to the iw_cm without a header, and an MPA request or reply holds up to
     * {@code MPA_MAX_PRIVDATA} (512) bytes, so no transport limit applies below the {@code u8}'s, unlike the IB
     * CM's 56 bytes of a REQ.
     */
    @Test
    void privateDataIsAtMost255BytesAndTheyTravelWholeOverIwarp() {
        CmId l = listen(h.b.address);
        resolve();
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> client.id.connect(ConnParam.of(new byte[256], 1, 1))).errno(), "a u8 length");
        assertEquals(QpState.INIT, client.qp.state());
        assertEquals("ROUTE_RESOLVED", client.id.state());

        byte[] ask = SiwHosts.random(255, 4);
        client.id.connect(ConnParam.of(ask, 1, 1));
        CmEvent req = server.expect(CmEventType.CONNECT_REQUEST);
        assertArrayEquals(ask, req.param().privateData(), "all 255 bytes in the MPA request");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> req.id().reject(new byte[256])).errno(),
                "rdma_reject's u8 length");
        byte[] no = SiwHosts.random(255, 5);
        req.id().reject(no);
        CmEvent rej = client.expect(CmEventType.REJECTED);
        assertArrayEquals(no, rej.param().privateData(), "all 255 bytes in the MPA reject");
        l.destroy();
    }

    @Test
    void unpluggingTheServersFunctionIsDeviceRemovalThereAndDisconnectedAtTheClient() {
        CmId l = listen(h.b.address);
        CmId conn = connect(l);
        h.mb.hotUnplug(h.mb.pci().function(SiwHosts.BDF.substring(5)));
        List<CmId> removed = Arrays.asList(server.expect(CmEventType.DEVICE_REMOVAL).id(),
                server.expect(CmEventType.DEVICE_REMOVAL).id());
        assertTrue(removed.contains(l) && removed.contains(conn), removed.toString());
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, conn::disconnect).errno());
        assertNull(conn.verbs());
        client.expect(CmEventType.DISCONNECTED);
        assertEquals(QpState.ERR, client.qp.state());
        conn.destroy();
        l.destroy();
    }
}
