package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.CmIdInfo;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.PortSpace;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.DataInputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code rdma_disconnect} over iWARP between two siw ends, the graceful close Linux makes of it: librdmacm's
 * {@code rdma_disconnect} moves the id's QP to SQD ({@code ucma_shutdown}, {@code ucma_modify_qp_sqd}), and
 * {@code cma.c}'s {@code rdma_disconnect} calls {@code iw_cm_disconnect(cm_id, 0)} ({@code iwcm.c}), which moves an
 * ESTABLISHED iw_cm_id to CLOSING and its QP to SQD ({@code iwcm_modify_qp_sqd}). siw makes SQD its CLOSING
 * ({@code siw_qp_nextstate_from_rts}: with the transmit side idle, the receives flushed, the connection dropped by
 * {@code siw_qp_cm_drop}, which reports CLOSE); {@code cm_close_handler} and {@code cma_iw_handler} make that
 * DISCONNECTED. The peer's siw reads the end of the stream ({@code siw_qp_llp_close}: an RTS QP goes to ERROR, its
 * send and receive queues flushed) and reports DISCONNECT ({@code cm_disconnect_handler}: CLOSING) and CLOSE
 * (DISCONNECTED). Real data crosses each connection first.
 */
@Timeout(60)
class SiwRdmaCmDisconnectTest {
    private final CmEnds ends = new CmEnds(71, 72, 7479);
    private final SiwRdmaCmTest.End client = ends.client;
    private final SiwRdmaCmTest.End server = ends.server;

    @AfterEach
    void close() {
        ends.close();
    }

    /**
     * A listener, the client's id connected to the server's (returned) with 4 and 8 READs each way, a 3000-byte SEND
     * from the client carried (bytes checked), then a receive posted at each end: wr 1 at the client, 2 at the
     * server.
     */
    private CmId connected() {
        ends.listen();
        ends.resolve();
        CmId conn = ends.connect();
        sendCrosses(client.qp, 77);
        client.qp.postRecv(List.of(RecvWr.of(1, client.sge(0, 64))));
        server.qp.postRecv(List.of(RecvWr.of(2, server.sge(0, 64))));
        return conn;
    }

    /** A 3000-byte SEND from the client's {@code qp} into a receive of the server's QP, every byte checked. */
    private void sendCrosses(QueuePair qp, long seed) {
        byte[] msg = SiwHosts.random(3000, seed);
        client.write(1 << 20, msg);
        server.qp.postRecv(List.of(RecvWr.of(9, server.sge(1 << 20, msg.length))));
        qp.postSend(new SendWr.Send(8, List.of(client.sge(1 << 20, msg.length)), SIGNALED, null));
        assertEquals(List.of(8L, WcStatus.SUCCESS), wc(SiwHosts.one(client.cq)));
        WorkCompletion r = SiwHosts.one(server.cq);
        assertEquals(List.of(9L, WcStatus.SUCCESS), wc(r));
        assertEquals(msg.length, r.byteLen());
        assertArrayEquals(msg, server.read(1 << 20, msg.length));
    }

    private static List<Object> wc(WorkCompletion w) {
        return List.of(w.wrId(), w.status());
    }

    private static QpState state(QueuePair q) {
        return q.query().qpState();
    }

    /** The receive {@code wrId} of {@code end} completed flushed, and nothing else is on its CQ. */
    private static void recvFlushed(SiwRdmaCmTest.End end, long wrId) {
        WorkCompletion w = SiwHosts.one(end.cq);
        assertEquals(List.of(wrId, WcStatus.WR_FLUSH_ERR, WcOpcode.RECV), List.of(w.wrId(), w.status(), w.opcode()),
                w.toString());
        assertEquals(List.of(), end.cq.poll(4), "one flush");
    }

    /** The server saw the connection end: DISCONNECTED, its QP in ERR ({@code siw_qp_llp_close}), wr 2 flushed. */
    private void serverDisconnected() {
        server.expect(CmEventType.DISCONNECTED);
        assertEquals(QpState.ERR, state(server.qp));
        recvFlushed(server, 2);
    }

    /** The QPs the machine of {@code core} has ({@code rdma res show qp}). */
    private static long qps(RdmaCore core) {
        return core.resources().stream().filter(r -> r.type().equals("qp")).count();
    }

    /**
     * {@code iw_cm_disconnect(cm_id, 0)} on an ESTABLISHED connection whose transmit side is idle: the client's QP is
     * in SQD when {@code rdma_disconnect} returns ({@code siw_qp_state_to_ib_qp_state}: CLOSING), its receive flushed
     * ({@code siw_rq_flush}) and nothing else; it is DISCONNECTED once. The server's QP is in ERR with its receive
     * flushed ({@code siw_qp_llp_close}), and it too is DISCONNECTED once.
     */
    @Test
    void disconnectMovesTheQpToSqdAndThePeersToErr() {
        connected();
        client.id.disconnect();
        assertEquals(QpState.SQD, state(client.qp), "iwcm_modify_qp_sqd: siw's CLOSING");
        recvFlushed(client, 1);
        client.expect(CmEventType.DISCONNECTED);
        serverDisconnected();
        assertEquals(QpState.SQD, state(client.qp));
        CmEnds.noEvent(client);
        CmEnds.noEvent(server);
    }

    /**
     * A second {@code rdma_disconnect} finds the iw_cm_id CLOSING or IDLE ({@code iw_cm_disconnect}: nothing to do,
     * 0), and librdmacm's SQD is ignored by siw's CLOSING ({@code siw_qp_nextstate_from_close}); the server's
     * {@code rdma_disconnect} after its DISCONNECTED finds its iw_cm_id IDLE, and its QP's SQD is ignored in ERROR
     * ({@code siw_qp_modify} has no case for it). No second DISCONNECTED anywhere, no second flush.
     */
    @Test
    void aSecondDisconnectAndThePeersChangeNothing() {
        CmId conn = connected();
        client.id.disconnect();
        client.id.disconnect();
        assertEquals(QpState.SQD, state(client.qp));
        client.expect(CmEventType.DISCONNECTED);
        serverDisconnected();
        client.id.disconnect();
        conn.disconnect();
        conn.disconnect();
        assertEquals(QpState.SQD, state(client.qp));
        assertEquals(QpState.ERR, state(server.qp));
        recvFlushed(client, 1);
        assertEquals(List.of(), server.cq.poll(4));
        CmEnds.noEvent(client);
        CmEnds.noEvent(server);
    }

    /**
     * {@code rdma_disconnect} with an RDMA READ waiting for its response (a raw server on the listening port answers
     * the MPA v2 request, reads the READ's request and never answers it): the transmit side is idle
     * ({@code tx_wqe(qp)->wr_status} is SIW_WR_IDLE while a READ waits in the ORQ), so {@code iwcm_modify_qp_sqd}
     * makes the QP CLOSING ({@code siw_qp_nextstate_from_rts}): SQD, the receive flushed, the READ outstanding and not
     * completed, and the server reads the end of the stream right after the READ's request, no TERMINATE.
     */
    @Test
    void aReadWaitingForItsResponseStaysOutstanding() throws Exception {
        try (ServerSocket raw = new ServerSocket(7479, 1, ends.h.b.address)) {
            ends.resolve();
            client.id.connect(ConnParam.of(null, 4, 8));
            try (Socket s = raw.accept()) {
                s.setSoTimeout((int) SiwHosts.WAIT.toMillis());
                DataInputStream in = new DataInputStream(s.getInputStream());
                in.readFully(new byte[Mpa.RR_HDR + Mpa.V2_DATA]);
                s.getOutputStream().write(Mpa.frame(true, false, Mpa.REVISION_2, new Mpa.V2(8, 8, false, 0),
                        new byte[0]));
                client.expect(CmEventType.ESTABLISHED);
                client.qp.postSend(new SendWr.RdmaRead(5, List.of(client.sge(0, 4096)), SIGNALED, 0x1000, 0x1234));
                byte[] req = new byte[Mpa.fpduLength(Iwarp.UNTAGGED_HDR + Iwarp.READ_REQUEST_BODY)];
                in.readFully(req);
                ByteBuffer b = ByteBuffer.wrap(req);
                assertEquals(Iwarp.OP_READ_REQUEST, Iwarp.parse(b, 2, b.getShort(0) & 0xffff).opcode());
                client.qp.postRecv(List.of(RecvWr.of(1, client.sge(8192, 64))));

                client.id.disconnect();
                assertEquals(QpState.SQD, state(client.qp), "CLOSING: the READ leaves the transmit side idle");
                assertEquals(0, in.readAllBytes().length, "after the READ's request the end: no TERMINATE");
            }
        }
        client.expect(CmEventType.DISCONNECTED);
        WorkCompletion w = SiwHosts.one(client.cq);
        assertEquals(List.of(1L, WcStatus.WR_FLUSH_ERR), wc(w), w.toString());
        assertEquals(List.of(), client.cq.poll(4), "the READ stays outstanding");
        assertEquals(QpState.SQD, state(client.qp));
        CmEnds.noEvent(client);
    }

    /**
     * {@code rdma_destroy_id} right after {@code rdma_disconnect}: {@code destroy_cm_id} finds the iw_cm_id CLOSING
     * and leaves the QP as it is, in SQD (only an ESTABLISHED one is closed abruptly, {@code iwcm_modify_qp_err}); the
     * CLOSE that follows is dropped ({@code IWCM_F_DROP_EVENTS}). The server is DISCONNECTED. Each QP then goes to ERR
     * (from CLOSING, {@code siw_qp_nextstate_from_close}) and is destroyed with its id: no QP and no id left at
     * either end.
     */
    @Test
    void destroyAfterADisconnectLeavesTheQpInSqdAndNothingLeaks() {
        CmId conn = connected();
        client.id.disconnect();
        client.id.destroy();
        assertEquals(QpState.SQD, state(client.qp), "destroy_cm_id leaves a CLOSING connection's QP alone");
        recvFlushed(client, 1);
        serverDisconnected();
        CmEnds.noEvent(client);

        SiwHosts.modify(client.qp, QpState.ERR);
        assertEquals(QpState.ERR, state(client.qp));
        client.qp.postRecv(List.of(RecvWr.of(3, client.sge(0, 64))));
        assertEquals(List.of(3L, WcStatus.WR_FLUSH_ERR), wc(SiwHosts.one(client.cq)), "ERR flushes what comes");
        client.qp.destroy();
        conn.destroy();
        server.qp.destroy();
        assertEquals(0, qps(ends.h.ca) + qps(ends.h.cb), "no QP left");
        assertEquals(Set.of("LISTEN"), Set.copyOf(ends.h.cb.cm().ids().stream().map(CmIdInfo::state).toList()));
        assertEquals(List.of(), ends.h.ca.cm().ids(), "no id left at the client");
    }

    /**
     * {@code rdma_destroy_id} of an ESTABLISHED connection without a disconnect: {@code destroy_cm_id} closes it
     * abruptly ({@code iwcm_modify_qp_err}): the client's QP in ERR with its receive flushed, the server
     * DISCONNECTED.
     */
    @Test
    void destroyWithoutADisconnectIsAbrupt() {
        connected();
        client.id.destroy();
        assertEquals(QpState.ERR, state(client.qp));
        recvFlushed(client, 1);
        serverDisconnected();
        CmEnds.noEvent(client);
    }

    /**
     * Both ends call {@code rdma_disconnect} at once. Each returns 0 ({@code iw_cm_disconnect}: "both sides are
     * disconnecting, the QP could already be in ERR or SQD"): each QP is in SQD (its own close came first) or ERR (the
     * peer's end of stream came first, {@code siw_qp_llp_close}), each receive is flushed once, and each end is
     * DISCONNECTED once.
     */
    @Test
    void disconnectsRacingAtBothEnds() throws Exception {
        CmId conn = connected();
        CyclicBarrier go = new CyclicBarrier(2);
        ExecutorService two = Executors.newFixedThreadPool(2);
        try {
            Future<?> a = two.submit(() -> {
                go.await();
                client.id.disconnect();
                return null;
            });
            Future<?> b = two.submit(() -> {
                go.await();
                conn.disconnect();
                return null;
            });
            a.get(10, TimeUnit.SECONDS);
            b.get(10, TimeUnit.SECONDS);
        } finally {
            two.shutdownNow();
            assertTrue(two.awaitTermination(10, TimeUnit.SECONDS));
        }
        client.expect(CmEventType.DISCONNECTED);
        server.expect(CmEventType.DISCONNECTED);
        assertTrue(Set.of(QpState.SQD, QpState.ERR).contains(state(client.qp)), state(client.qp).toString());
        assertTrue(Set.of(QpState.SQD, QpState.ERR).contains(state(server.qp)), state(server.qp).toString());
        recvFlushed(client, 1);
        recvFlushed(server, 2);
        CmEnds.noEvent(client);
        CmEnds.noEvent(server);
    }

    /**
     * A modify that comes while the peer's close is taking the QP off its connection waits for the QP to be in ERR,
     * as {@code siw_qp_llp_close} and {@code siw_verbs_modify_qp} both hold {@code qp->state_lock} for writing: the
     * server's receive thread is held after the QP left its connection and before {@code siw_qp_llp_close} moved it
     * (the state lock held), and the server's modify to ERR made then waits on that lock; once let go, the QP is in
     * ERR, its receive flushed once, and the modify returns without error (it used to run without the lock and could
     * find the QP moved from RTS to ERR under it: EINVAL).
     */
    @Test
    void aModifyWaitsForTheConnectionLossUnderWay() throws Exception {
        connected();
        CountDownLatch held = new CountDownLatch(1);
        CountDownLatch go = new CountDownLatch(1);
        ends.h.db.providers.get("siw0").afterDetach = () -> {
            held.countDown();
            try {
                go.await(SiwHosts.WAIT.toMillis(), TimeUnit.MILLISECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        };
        ExecutorService one = Executors.newSingleThreadExecutor();
        try {
            client.id.disconnect();
            assertTrue(held.await(SiwHosts.WAIT.toMillis(), TimeUnit.MILLISECONDS), "the server never read the end");
            AtomicReference<Thread> modifier = new AtomicReference<>();
            Future<?> modify = one.submit(() -> {
                modifier.set(Thread.currentThread());
                server.qp.modify(QpAttr.builder().state(QpState.ERR).build());
                return null;
            });
            long deadline = System.nanoTime() + SiwHosts.WAIT.toNanos();
            while (!modify.isDone() && !waitsInModifying(modifier.get()) && System.nanoTime() < deadline) {
                Thread.onSpinWait();
            }
            assertTrue(!modify.isDone() && waitsInModifying(modifier.get()),
                    "the modify went through while the connection's loss was half done");
            go.countDown();
            modify.get(SiwHosts.WAIT.toMillis(), TimeUnit.MILLISECONDS);
        } finally {
            go.countDown();
            one.shutdownNow();
            assertTrue(one.awaitTermination(10, TimeUnit.SECONDS));
        }
        serverDisconnected();
        client.expect(CmEventType.DISCONNECTED);
        recvFlushed(client, 1);
        CmEnds.noEvent(client);
        CmEnds.noEvent(server);
    }

    /** Whether {@code t} is parked in {@code SiwQp.modifying}, waiting for the QP's state lock. */
    private static boolean waitsInModifying(Thread t) {
        if (t == null || t.getState() != Thread.State.WAITING) {
            return false;
        }
        for (StackTraceElement f : t.getStackTrace()) {
            if (f.getClassName().equals(SiwQp.class.getName()) && f.getMethodName().equals("modifying")) {
                return true;
            }
        }
        return false;
    }

    /**
     * {@code rdma_disconnect} right after {@code rdma_accept} of a QP the id does not own (made on the PD, named by
     * the connection parameters: librdmacm has no QP to move), before the iw_cm handled the accept's ESTABLISHED:
     * {@code iw_cm_disconnect} waits for it ({@code IWCM_F_CONNECT_WAIT}), then moves the QP to SQD
     * ({@code iwcm_modify_qp_sqd}). The server sees ESTABLISHED, then DISCONNECTED, its QP in SQD; the client sees
     * ESTABLISHED, then DISCONNECTED, its QP in ERR.
     */
    @Test
    void aDisconnectRightAfterAcceptComesAfterEstablished() {
        ends.listen();
        ends.resolve();
        client.id.connect(ConnParam.of(null, 4, 8));
        CmId conn = server.expect(CmEventType.CONNECT_REQUEST).id();
        ProtectionDomain pd = conn.verbs().allocPd();
        CompletionQueue cq = conn.verbs().createCq(16, null, 0);
        QueuePair q = pd.createQp(new QpInitAttr(cq, cq, null, new QpCap(4, 4, 1, 1, 0), QpType.RC, false));
        conn.accept(new ConnParam(null, 4, 8, 1, 7, 7, false, q.qpNum()));
        conn.disconnect();
        server.expect(CmEventType.ESTABLISHED);
        server.expect(CmEventType.DISCONNECTED);
        assertEquals(QpState.SQD, state(q), "iwcm_modify_qp_sqd once ESTABLISHED came");
        client.expect(CmEventType.ESTABLISHED);
        client.expect(CmEventType.DISCONNECTED);
        assertEquals(QpState.ERR, state(client.qp));
        CmEnds.noEvent(client);
        CmEnds.noEvent(server);
        q.destroy();
    }

    /**
     * Where there is no connection: an id with a route but no connect has no iw_cm_id ({@code rdma_disconnect}:
     * EINVAL), a listener's iw_cm_id is LISTEN ({@code iw_cm_disconnect}: EINVAL); a CONNECT_REQUEST id not yet
     * answered is CONN_RECV ({@code iw_cm_disconnect}: 0, nothing done), and it can still be accepted.
     */
    @Test
    void disconnectWithoutAConnection() {
        CmId l = ends.listen();
        CmId id = ends.resolve();
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, id::disconnect).errno(), "no iw_cm_id");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, l::disconnect).errno(), "LISTEN");

        id.connect(ConnParam.of(null, 4, 8));
        CmId conn = server.expect(CmEventType.CONNECT_REQUEST).id();
        conn.disconnect();
        server.resources(conn);
        conn.accept(ConnParam.of(null, 4, 8));
        client.expect(CmEventType.ESTABLISHED);
        server.expect(CmEventType.ESTABLISHED);
        sendCrosses(client.qp, 78);
    }

    /**
     * After REJECTED the client's iw_cm_id is IDLE ({@code cm_conn_rep_handler}), so {@code rdma_disconnect} returns
     * 0 ({@code iw_cm_disconnect}), its QP, in ERR from siw's release, ignoring librdmacm's SQD.
     */
    @Test
    void disconnectAfterARejectChangesNothing() {
        ends.listen();
        ends.resolve();
        client.id.connect(ConnParam.of(null, 4, 8));
        server.expect(CmEventType.CONNECT_REQUEST).id().reject(null);
        CmEvent rej = client.expect(CmEventType.REJECTED);
        assertEquals(-Errno.ECONNRESET.number(), rej.status());
        client.id.disconnect();
        assertEquals(QpState.ERR, state(client.qp));
        CmEnds.noEvent(client);
    }

    /**
     * A QP that a disconnect left in SQD (siw's CLOSING) goes back to IDLE on RESET
     * ({@code siw_qp_nextstate_from_close}; INIT to a query) and connects again through the rdma_cm on a new id that
     * names it ({@code cma_connect_iw}: the connection parameters' QP number when the id has none): a SEND crosses,
     * bytes checked. That id's {@code rdma_disconnect} has no QP of its own to move, so it is the iw_cm's
     * {@code iwcm_modify_qp_sqd} that moves the QP to SQD.
     */
    @Test
    void aQpBackFromSqdToIdleConnectsAgain() {
        connected();
        client.id.disconnect();
        client.expect(CmEventType.DISCONNECTED);
        serverDisconnected();
        recvFlushed(client, 1);
        SiwHosts.modify(client.qp, QpState.RESET);
        assertEquals(QpState.INIT, state(client.qp), "IDLE, INIT to a query");

        CmId again = client.ch.createId(PortSpace.TCP);
        again.resolveAddr(null, new InetSocketAddress(ends.h.b.address, 7479), 2000);
        client.expect(CmEventType.ADDR_RESOLVED);
        again.resolveRoute(2000);
        client.expect(CmEventType.ROUTE_RESOLVED);
        again.connect(new ConnParam(null, 4, 8, 1, 7, 7, false, client.qp.qpNum()));
        CmId conn = server.expect(CmEventType.CONNECT_REQUEST).id();
        server.resources(conn);
        conn.accept(ConnParam.of(null, 4, 8));
        client.expect(CmEventType.ESTABLISHED);
        server.expect(CmEventType.ESTABLISHED);
        assertEquals(QpState.RTS, state(client.qp));
        sendCrosses(client.qp, 79);

        again.disconnect();
        assertEquals(QpState.SQD, state(client.qp), "iwcm_modify_qp_sqd");
        client.expect(CmEventType.DISCONNECTED);
        server.expect(CmEventType.DISCONNECTED);
        assertEquals(QpState.ERR, state(server.qp));
    }
}
