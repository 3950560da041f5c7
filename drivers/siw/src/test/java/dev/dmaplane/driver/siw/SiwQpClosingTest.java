package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.PostException;
import dev.dmaplane.rdma.verbs.QpState;
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
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Optional;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A connected (RTS) siw QP asked for SQD or SQE, which {@code siw_verbs_modify_qp} ({@code siw_verbs.c}) makes siw's
 * CLOSING and TERMINATE, and what follows, as {@code siw_qp_nextstate_from_rts}, {@code siw_qp_nextstate_from_close},
 * {@code siw_qp_nextstate_from_term}, {@code siw_qp_cm_drop} and {@code siw_send_terminate} ({@code siw_qp.c},
 * {@code siw_cm.c}) do it: the connection is dropped either way (the consumer gets CLOSE, the peer sees the stream
 * end), CLOSING flushes the receives only, TERMINATE sends a TERMINATE (RDMAP layer, Local Catastrophic Error, code
 * unspecified) and flushes nothing; {@code siw_post_send} and {@code siw_post_receive} refuse work with ENOTCONN in
 * both, and {@code siw_query_qp} reports them as SQD and SQE ({@code siw_qp_state_to_ib_qp_state}).
 */
@Timeout(60)
class SiwQpClosingTest {
    private final SiwHosts h = new SiwHosts(67, 68);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    /** A SEND and a receive posted to {@code q} are both refused with ENOTCONN, and nothing is queued. */
    private void postingIsEnotconn(QueuePair q, SiwHosts.Host on) {
        PostException s = assertThrows(PostException.class,
                () -> q.postSend(new SendWr.Send(40, List.of(on.sge(0, 64)), SIGNALED, null)));
        assertEquals(Errno.ENOTCONN, s.errno(), s.getMessage());
        assertEquals(0, s.badIndex());
        PostException r = assertThrows(PostException.class, () -> q.postRecv(List.of(RecvWr.of(41, on.sge(0, 64)))));
        assertEquals(Errno.ENOTCONN, r.errno(), r.getMessage());
        assertEquals(0, r.badIndex());
    }

    /** The peer's end of a dropped connection: DISCONNECT and CLOSE, its QP in ERR, its receive {@code wrId} flushed. */
    private void peerEnded(QueuePair q, long wrId) {
        assertEquals(IwCmEvent.Type.DISCONNECT, h.b.event().type(), "the peer's stream ended");
        SiwHosts.expect(h.b.event(), IwCmEvent.Type.CLOSE);
        assertEquals(QpState.ERR, q.query().qpState());
        WorkCompletion w = SiwHosts.one(h.b.cq);
        assertEquals(List.of(wrId, WcStatus.WR_FLUSH_ERR), List.of(w.wrId(), w.status()), w.toString());
    }

    /**
     * {@code siw_qp_nextstate_from_rts} to CLOSING with nothing in the transmit path: the receive queue is flushed
     * ({@code siw_rq_flush}), the send queue is not, and {@code siw_qp_cm_drop} closes the connection, reporting CLOSE
     * (no DISCONNECT: the consumer closed it) and releasing the socket, so the peer sees a clean end of stream, no
     * TERMINATE: its QP goes to ERR with its receive flushed, its consumer gets DISCONNECT and CLOSE. A query reports
     * SQD; sends and receives are refused with ENOTCONN ({@code siw_post_send}, {@code siw_post_receive}).
     */
    @Test
    void sqdDropsTheConnectionAndFlushesTheReceivesOnly() {
        QueuePair[] p = h.pair();
        p[0].postRecv(List.of(RecvWr.of(21, h.a.sge(0, 64))));
        p[1].postRecv(List.of(RecvWr.of(31, h.b.sge(0, 64))));

        SiwHosts.modify(p[0], QpState.SQD);
        assertEquals(QpState.SQD, p[0].query().qpState(), "CLOSING, SQD to a query");
        WorkCompletion w = SiwHosts.one(h.a.cq);
        assertEquals(List.of(21L, WcStatus.WR_FLUSH_ERR, WcOpcode.RECV), List.of(w.wrId(), w.status(), w.opcode()));
        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);
        peerEnded(p[1], 31);

        postingIsEnotconn(p[0], h.a);
        assertEquals(List.of(), h.a.cq.poll(4), "nothing queued, nothing flushed");
        assertNull(h.a.events.peek(), "CLOSE only");
        assertEquals(0, SiwHosts.counter(h.da, "dmaplane_terminate_sent")
                + SiwHosts.counter(h.db, "dmaplane_terminate_received"), "no TERMINATE");
    }

    /**
     * {@code siw_qp_nextstate_from_close}: CLOSING takes IDLE and ERROR; CLOSING is kept; RTS and RTR get
     * -ECONNABORTED, which {@code siw_qp_modify} drops (returning 0), and TERMINATE and the rest have no case: all
     * leave the QP in CLOSING. ERROR then is final, and work posted in it is flushed ({@code siw_sq_flush_wr},
     * {@code siw_rq_flush_wr}).
     */
    @Test
    void closingTakesIdleAndErrorAndIgnoresTheRest() {
        QueuePair[] p = h.pair();
        SiwHosts.modify(p[0], QpState.SQD);
        for (QpState s : List.of(QpState.RTS, QpState.RTR, QpState.SQE, QpState.SQD)) {
            SiwHosts.modify(p[0], s);
            assertEquals(QpState.SQD, p[0].query().qpState(), "after " + s);
        }
        SiwHosts.modify(p[0], QpState.ERR);
        assertEquals(QpState.ERR, p[0].query().qpState());
        p[0].postRecv(List.of(RecvWr.of(11, h.a.sge(0, 64))));
        p[0].postSend(new SendWr.Send(12, List.of(h.a.sge(0, 64)), SIGNALED, null));
        List<WorkCompletion> wc = SiwHosts.poll(h.a.cq, 2);
        assertEquals(List.of(11L, 12L), wc.stream().map(WorkCompletion::wrId).toList(), wc.toString());
        assertTrue(wc.stream().allMatch(c -> c.status() == WcStatus.WR_FLUSH_ERR), wc.toString());
        SiwHosts.modify(p[0], QpState.INIT);
        assertEquals(QpState.ERR, p[0].query().qpState(), "ERROR is final");

        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);
        assertEquals(IwCmEvent.Type.DISCONNECT, h.b.event().type());
        SiwHosts.expect(h.b.event(), IwCmEvent.Type.CLOSE);
        QueuePair[] q = h.pair();
        SiwHosts.modify(q[0], QpState.SQD);
        SiwHosts.modify(q[0], QpState.RESET);
        assertEquals(QpState.INIT, q[0].query().qpState(), "RESET is IDLE, INIT to a query");
    }

    /**
     * A QP that went from CLOSING back to IDLE ({@code siw_qp_nextstate_from_close}) takes receives again and is
     * connected anew by the connection manager ({@code siw_connect}, {@code siw_proc_mpareply} move an IDLE QP to
     * RTS), its message sequence numbers starting over: a SEND crosses the new connection, every byte checked.
     */
    @Test
    void aQpBackToIdleConnectsAgain() {
        QueuePair[] p = h.pair();
        SiwHosts.modify(p[0], QpState.SQD);
        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);
        SiwHosts.modify(p[0], QpState.INIT);
        assertEquals(QpState.INIT, p[0].query().qpState());

        QueuePair qb = h.b.rc();
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add)) {
            h.a.cm.connect(p[0].qpNum(), l.local(), new IwConnParam(null, 4, 4), h.a.events::add);
            IwCmEvent req = h.b.event();
            while (req.type() != IwCmEvent.Type.CONNECT_REQUEST) {
                req = h.b.event(); // the first connection's DISCONNECT and CLOSE
            }
            req.request().accept(qb.qpNum(), new IwConnParam(null, 4, 4), h.b.events::add);
        }
        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY);
        assertEquals(QpState.RTS, p[0].query().qpState());
        byte[] data = SiwHosts.random(100_000, 17);
        h.a.write(0, data);
        qb.postRecv(List.of(RecvWr.of(1, h.b.sge(0, data.length))));
        p[0].postSend(new SendWr.Send(2, List.of(h.a.sge(0, data.length)), SIGNALED, null));
        assertEquals(WcStatus.SUCCESS, SiwHosts.one(h.a.cq).status());
        WorkCompletion got = SiwHosts.one(h.b.cq);
        while (got.wrId() != 1 || got.qpNum() != qb.qpNum()) {
            got = SiwHosts.one(h.b.cq); // the first connection's flushed receives, if any
        }
        assertEquals(List.of(WcStatus.SUCCESS, (long) data.length), List.of(got.status(), got.byteLen()));
        assertArrayEquals(data, h.b.read(0, data.length));
    }

    /**
     * {@code siw_qp_nextstate_from_rts} to TERMINATE: {@code siw_init_terminate(qp, TERM_ERROR_LAYER_RDMAP,
     * RDMAP_ETYPE_CATASTROPHIC, RDMAP_ECODE_UNSPECIFIED, 1)}, then {@code siw_qp_cm_drop} sends it and closes the
     * connection (CLOSE to the consumer) without flushing anything. The peer takes the TERMINATE
     * ({@code siw_proc_terminate}) and goes to ERR, its receive flushed, with CLOSE alone and no async event
     * ({@code siw_qp_cm_drop}, {@code SIW_CM_WORK_CLOSE_LLP}, {@code siw_qp_llp_close}). A query reports
     * SQE; sends and receives are refused with ENOTCONN. {@code siw_qp_nextstate_from_term} takes ERROR only, which
     * flushes the receive queue ({@code siw_rq_flush}).
     */
    @Test
    void sqeTerminatesThePeerAndFlushesNothingUntilError() {
        QueuePair[] p = h.pair();
        p[0].postRecv(List.of(RecvWr.of(21, h.a.sge(0, 64))));
        p[1].postRecv(List.of(RecvWr.of(31, h.b.sge(0, 64))));

        SiwHosts.modify(p[0], QpState.SQE);
        assertEquals(QpState.SQE, p[0].query().qpState(), "TERMINATE, SQE to a query");
        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);
        SiwTerminateTest.closedByTerminate(h.b, p[1]);
        WorkCompletion flushed = SiwHosts.one(h.b.cq);
        assertEquals(List.of(31L, WcStatus.WR_FLUSH_ERR), List.of(flushed.wrId(), flushed.status()));
        assertEquals(1, SiwHosts.counter(h.da, "dmaplane_terminate_sent"));
        assertEquals(1, SiwHosts.counter(h.db, "dmaplane_terminate_received"));
        assertEquals(List.of(), h.a.cq.poll(4), "the receive stays queued");

        postingIsEnotconn(p[0], h.a);
        for (QpState s : List.of(QpState.RESET, QpState.INIT, QpState.RTR, QpState.RTS, QpState.SQD, QpState.SQE)) {
            SiwHosts.modify(p[0], s);
            assertEquals(QpState.SQE, p[0].query().qpState(), "after " + s);
        }
        assertEquals(List.of(), h.a.cq.poll(4), "nothing queued, nothing flushed");
        SiwHosts.modify(p[0], QpState.ERR);
        assertEquals(QpState.ERR, p[0].query().qpState());
        WorkCompletion w = SiwHosts.one(h.a.cq);
        assertEquals(List.of(21L, WcStatus.WR_FLUSH_ERR), List.of(w.wrId(), w.status()));
        assertNull(h.a.events.peek(), "CLOSE only");
    }

    /**
     * Posts a READ from the raw peer {@code s}, which reads its request off the stream and never answers it: it waits
     * in the ORQ, the transmit side idle.
     */
    private void readNobodyAnswers(QueuePair qa, Socket s) throws IOException {
        qa.postSend(new SendWr.RdmaRead(5, List.of(h.a.sge(0, 4096)), SIGNALED, 0x1000, 0x1234));
        byte[] req = new byte[SiwHosts.READ_REQUEST_FPDU];
        new DataInputStream(s.getInputStream()).readFully(req);
        ByteBuffer b = ByteBuffer.wrap(req);
        assertEquals(Iwarp.OP_READ_REQUEST, Iwarp.parse(b, 2, b.getShort(0) & 0xffff).opcode());
    }

    /**
     * On the wire, towards TERMINATE: after the outstanding READ's request comes the TERMINATE of
     * {@code siw_send_terminate} (RFC 5040 section 4.8: untagged, queue 2, MSN 1, no header of a failed frame, as a
     * Local Catastrophic Error attaches none; layer RDMAP, type 0, code 0xff), then the end of the stream. The READ in
     * the ORQ is not flushed, not by the modify and not by the refused post after it.
     */
    @Test
    void sqeSendsTheCatastrophicTerminateAndKeepsTheOrq() throws Exception {
        QueuePair qa = h.a.rc();
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address); Socket s = h.rawPeer(server, qa)) {
            readNobodyAnswers(qa, s);
            SiwHosts.modify(qa, QpState.SQE);
            byte[] wire = s.getInputStream().readAllBytes();
            assertEquals(Mpa.fpduLength(Iwarp.UNTAGGED_HDR + Iwarp.TERMINATE_BODY), wire.length,
                    "after the READ request the TERMINATE, then the end");
            assertEquals(new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_LOCAL_CATASTROPHIC, 0xff),
                    SiwMpaTerminateTest.terminate(wire));
        }
        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);
        assertEquals(QpState.SQE, qa.query().qpState());
        assertEquals(Errno.ENOTCONN, assertThrows(PostException.class,
                () -> qa.postSend(new SendWr.Send(6, List.of(h.a.sge(0, 64)), SIGNALED, null))).errno());
        assertEquals(List.of(), h.a.cq.poll(4), "the READ stays outstanding");
    }

    /**
     * On the wire, towards CLOSING with a READ waiting in the ORQ: the transmit side is idle
     * ({@code tx_wqe(qp)->wr_status} is SIW_WR_IDLE while a READ waits for its response), so the QP goes to CLOSING,
     * the peer reads the READ request and then the end of the stream, nothing else, and the READ is not flushed.
     */
    @Test
    void sqdWithAReadInTheOrqClosesCleanlyAndKeepsIt() throws Exception {
        QueuePair qa = h.a.rc();
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address); Socket s = h.rawPeer(server, qa)) {
            readNobodyAnswers(qa, s);
            SiwHosts.modify(qa, QpState.SQD);
            assertEquals(0, s.getInputStream().readAllBytes().length, "after the READ request the end: no TERMINATE");
        }
        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);
        assertEquals(QpState.SQD, qa.query().qpState());
        assertEquals(List.of(), h.a.cq.poll(4), "the READ stays outstanding");
    }

    /**
     * A READ left in the ORQ by CLOSING when the QP goes back to IDLE ({@code siw_qp_nextstate_from_close}) and is
     * connected anew. Linux loses it: {@code siw_qp_readq_init} allocates a new ORQ over the old one on the next
     * connection, and nothing completes it. Here it completes with WR_FLUSH_ERR at the move to IDLE (no Read Response
     * can come for it any more), so the requests of the next connection complete behind it: a SEND over the new
     * connection succeeds, every byte checked.
     */
    @Test
    void aReadLeftInTheOrqIsFlushedAtIdleAndTheNextConnectionSends() throws Exception {
        QueuePair qa = h.a.rc();
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address); Socket s = h.rawPeer(server, qa)) {
            readNobodyAnswers(qa, s);
            SiwHosts.modify(qa, QpState.SQD);
            assertEquals(0, s.getInputStream().readAllBytes().length, "the end of the stream");
        }
        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);
        assertEquals(List.of(), h.a.cq.poll(4), "the READ stays outstanding in CLOSING");
        SiwHosts.modify(qa, QpState.INIT);
        assertEquals(QpState.INIT, qa.query().qpState());
        WorkCompletion read = SiwHosts.one(h.a.cq);
        assertEquals(List.of(5L, WcStatus.WR_FLUSH_ERR, WcOpcode.RDMA_READ),
                List.of(read.wrId(), read.status(), read.opcode()), read.toString());
        assertEquals(Optional.empty(), h.a.ctx.pollAsyncEvent().map(AsyncEvent::type), "no async event");

        QueuePair qb = h.b.rc();
        h.pair(qa, qb);
        byte[] data = SiwHosts.random(10_000, 23);
        h.a.write(0, data);
        qb.postRecv(List.of(RecvWr.of(1, h.b.sge(0, data.length))));
        qa.postSend(new SendWr.Send(6, List.of(h.a.sge(0, data.length)), SIGNALED, null));
        WorkCompletion sent = SiwHosts.one(h.a.cq);
        assertEquals(List.of(6L, WcStatus.SUCCESS), List.of(sent.wrId(), sent.status()), sent.toString());
        WorkCompletion got = SiwHosts.one(h.b.cq);
        assertEquals(List.of(1L, WcStatus.SUCCESS, (long) data.length),
                List.of(got.wrId(), got.status(), got.byteLen()));
        assertArrayEquals(data, h.b.read(0, data.length));
    }

    /**
     * {@code siw_qp_nextstate_from_rts} to CLOSING while the transmit side holds a request (a peer that reads nothing
     * stalled the stream under 64 SENDs of 4 MiB): the QP goes to ERROR instead, its send queue flushed
     * ({@code siw_sq_flush}): each SEND completes, those TCP took in full with SUCCESS, the rest with WR_FLUSH_ERR, in
     * order, the last one flushed. The connection is dropped (CLOSE).
     */
    @Test
    void sqdWithARequestInProgressGoesToError() throws Exception {
        QueuePair qa = h.a.rc();
        int n = 64;
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address); Socket s = h.rawPeer(server, qa)) {
            for (int i = 0; i < n; i++) {
                qa.postSend(new SendWr.Send(100 + i, List.of(h.a.sge(0, SiwHosts.BUF)), SIGNALED, null));
            }
            SiwHosts.modify(qa, QpState.SQD);
            assertEquals(QpState.ERR, qa.query().qpState());
        }
        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);
        List<WorkCompletion> wc = SiwHosts.poll(h.a.cq, n);
        assertEquals(n, wc.size());
        for (int i = 0; i < n; i++) {
            assertEquals(100 + i, wc.get(i).wrId(), "in order");
        }
        int ok = (int) wc.stream().takeWhile(WorkCompletion::isSuccess).count();
        assertTrue(ok < n, "the stream stalled: " + ok + " of " + n + " sent");
        assertTrue(wc.subList(ok, n).stream().allMatch(c -> c.status() == WcStatus.WR_FLUSH_ERR), wc.toString());
    }
}
