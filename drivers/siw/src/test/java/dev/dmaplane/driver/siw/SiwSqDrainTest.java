package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.QpAttr;
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
import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.Optional;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * SQ_DRAINED on siw: {@code siw_sq_flush} ({@code drivers/infiniband/sw/siw/siw_qp.c}) raises it when it flushed
 * requests still in the send queue's ring, posted and never activated (the one the transmit side holds,
 * {@code tx_wqe}, and the READs in the ORQ do not count); {@code siw_qp_modify} flushes the send queue on the way to
 * ERROR from RTS, and from TERMINATE or CLOSING only with the transmit side busy; {@code siw_qp_llp_close} flushes it
 * when the connection goes. {@code siw_verbs_modify_qp} ({@code siw_verbs.c}) reads only the state and the access
 * flags, so SQD with {@code IB_QP_EN_SQD_ASYNC_NOTIFY} raises nothing, and {@code siw_query_qp} reports no
 * {@code sq_draining}.
 */
@Timeout(60)
class SiwSqDrainTest {
    private static final int SENDS = 64;

    private final SiwHosts h = new SiwHosts(93, 94);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    /** 64 SENDs of 4 MiB to a peer that reads nothing: the stream stalls under the first ones, the rest wait. */
    private void stall(QueuePair qa) {
        for (int i = 0; i < SENDS; i++) {
            qa.postSend(new SendWr.Send(100 + i, List.of(h.a.sge(0, SiwHosts.BUF)), SIGNALED, null));
        }
    }

    /** The next async event of a's context is SQ_DRAINED on {@code q}. */
    private void sqDrained(QueuePair q) {
        AsyncEvent e = h.a.asyncEvent();
        e.ack();
        assertEquals(EventType.SQ_DRAINED, e.type(), e.toString());
        assertEquals(q.qpNum(), e.qp().orElseThrow().qpNum());
    }

    /** No async event is queued on a's context. */
    private void noEvent() {
        Optional<AsyncEvent> e = h.a.ctx.pollAsyncEvent();
        assertFalse(e.isPresent(), () -> "no async event, got " + e.get().type());
    }

    /** Every one of the 64 SENDs completed in order, the last of them flushed. */
    private void allCompleted() {
        List<WorkCompletion> wc = SiwHosts.poll(h.a.cq, SENDS);
        for (int i = 0; i < SENDS; i++) {
            assertEquals(100 + i, wc.get(i).wrId(), "in order");
        }
        assertEquals(WcStatus.WR_FLUSH_ERR, wc.getLast().status());
    }

    /**
     * {@code siw_qp_nextstate_from_rts} to ERROR: {@code siw_sq_flush} finds SENDs in the ring behind the one the
     * stalled stream holds and raises SQ_DRAINED after it flushed them.
     */
    @Test
    void errorFlushingWaitingSendsRaisesSqDrained() throws Exception {
        QueuePair qa = h.a.rc();
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address); Socket s = h.rawPeer(server, qa)) {
            stall(qa);
            SiwHosts.modify(qa, QpState.ERR);
            sqDrained(qa);
        }
        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);
        allCompleted();
    }

    /**
     * {@code siw_qp_nextstate_from_term} to ERROR with the transmit side busy (TERMINATE taken while the stream was
     * stalled, its TERMINATE not sent into a message in progress): {@code siw_sq_flush}, SQ_DRAINED.
     */
    @Test
    void terminateToErrorWithTheSendsWaitingRaisesSqDrained() throws Exception {
        QueuePair qa = h.a.rc();
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address); Socket s = h.rawPeer(server, qa)) {
            stall(qa);
            SiwHosts.modify(qa, QpState.SQE);
            noEvent();
            SiwHosts.modify(qa, QpState.ERR);
            sqDrained(qa);
        }
        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);
        allCompleted();
    }

    /**
     * {@code siw_qp_llp_close} when the peer resets the stalled stream: the QP goes to ERROR, {@code siw_sq_flush}
     * flushes the SENDs in the ring and raises SQ_DRAINED.
     */
    @Test
    void theConnectionLostUnderWaitingSendsRaisesSqDrained() throws Exception {
        QueuePair qa = h.a.rc();
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address)) {
            Socket s = h.rawPeer(server, qa);
            stall(qa);
            s.setSoLinger(true, 0);
            s.close();
            sqDrained(qa);
        }
        assertEquals(QpState.ERR, qa.query().qpState());
        allCompleted();
    }

    /**
     * An error of the receive path with SENDs waiting behind a stalled stream: the raw peer sends a SEND of 64 bytes
     * into a receive of 16 ({@code siw_send_check_ntoh}: QP_FATAL; {@code siw_rdmap_complete}: LOC_LEN_ERR). The
     * receive path drops the connection ({@code siw_qp_cm_drop(qp, 1)}), whose release ({@code siw_qp_llp_close})
     * moves the QP to ERROR and flushes the ring with {@code siw_sq_flush}, which raises SQ_DRAINED: the completion's
     * error does not move the QP by itself ({@code siw_rqe_complete}). Here the move comes before QP_FATAL is raised,
     * so that a query after the event sees ERR.
     */
    @Test
    void aReceiveFailedWithSendsWaitingRaisesSqDrained() throws Exception {
        QueuePair qa = h.a.rc();
        qa.postRecv(List.of(RecvWr.of(7, h.a.sge(0, 16))));
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address); Socket s = h.rawPeer(server, qa)) {
            stall(qa);
            s.getOutputStream().write(SiwRxPlacementTest.send(true, 1, 0, new byte[64]));
            sqDrained(qa);
            AsyncEvent e = h.a.asyncEvent();
            e.ack();
            assertEquals(EventType.QP_FATAL, e.type());
            assertEquals(QpState.ERR, qa.query().qpState());
        }
        List<WorkCompletion> wc = SiwHosts.poll(h.a.cq, SENDS + 1);
        WorkCompletion recv = wc.stream().filter(w -> w.wrId() == 7).findFirst().orElseThrow();
        assertEquals(List.of(WcStatus.LOC_LEN_ERR, WcOpcode.RECV), List.of(recv.status(), recv.opcode()));
        List<WorkCompletion> sends = wc.stream().filter(w -> w.wrId() != 7).toList();
        for (int i = 0; i < SENDS; i++) {
            assertEquals(100 + i, sends.get(i).wrId(), "in order");
        }
        assertEquals(WcStatus.WR_FLUSH_ERR, sends.getLast().status());
        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);
    }

    /**
     * Nothing in the ring, nothing raised: ERROR from RTS with the send queue empty, and from CLOSING with a READ
     * waiting in the ORQ (the transmit side idle: {@code siw_qp_nextstate_from_close} does not call
     * {@code siw_sq_flush}).
     */
    @Test
    void noSqDrainedWithoutWaitingSends() throws Exception {
        QueuePair[] p = h.pair();
        SiwHosts.modify(p[0], QpState.ERR);
        noEvent();
        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);

        QueuePair qa = h.a.rc();
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address); Socket s = h.rawPeer(server, qa)) {
            readNobodyAnswers(qa, s);
            SiwHosts.modify(qa, QpState.SQD);
            SiwHosts.modify(qa, QpState.ERR);
            noEvent();
        }
    }

    /**
     * SQD asked with {@code IB_QP_EN_SQD_ASYNC_NOTIFY}: siw takes the modify (CLOSING, SQD to a query) and raises no
     * SQ_DRAINED, where the core's IB rule would raise it at once with nothing started; with a READ waiting in the
     * ORQ the query reports no {@code sq_draining}.
     */
    @Test
    void sqdIgnoresEnSqdAsyncNotify() throws Exception {
        QueuePair[] p = h.pair();
        p[0].modify(QpAttr.builder().state(QpState.SQD).enSqdAsyncNotify(true).build());
        assertEquals(QpState.SQD, p[0].query().qpState());
        noEvent();
        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);

        QueuePair qa = h.a.rc();
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address); Socket s = h.rawPeer(server, qa)) {
            readNobodyAnswers(qa, s);
            qa.modify(QpAttr.builder().state(QpState.SQD).enSqdAsyncNotify(true).build());
            QpAttr a = qa.query();
            assertEquals(QpState.SQD, a.qpState());
            assertFalse(a.sqDraining(), "siw_query_qp sets no sq_draining");
            noEvent();
        }
    }

    /**
     * A READ waiting in the ORQ when CLOSING or TERMINATE goes to ERROR with the transmit side idle: Linux's
     * {@code siw_qp_nextstate_from_close} and {@code siw_qp_nextstate_from_term} do not call {@code siw_sq_flush}, and
     * nothing completes it later ({@code siw_qp_cm_drop(qp, 0)} took the QP off its endpoint, so no
     * {@code siw_qp_llp_close} follows; {@code siw_destroy_qp}'s modify to ERROR finds the QP in ERROR and does
     * nothing; {@code siw_free_qp} frees the ORQ): the work request would never complete. Here the core flushes it
     * at ERROR (WR_FLUSH_ERR), with no SQ_DRAINED (no request was in the ring).
     */
    @Test
    void aReadLeftInTheOrqIsFlushedAtError() throws Exception {
        for (QpState leaving : List.of(QpState.SQD, QpState.SQE)) {
            QueuePair qa = h.a.rc();
            try (ServerSocket server = new ServerSocket(0, 1, h.b.address); Socket s = h.rawPeer(server, qa)) {
                readNobodyAnswers(qa, s);
                SiwHosts.modify(qa, leaving);
                assertEquals(List.of(), h.a.cq.poll(4), "the READ stays outstanding in " + leaving);
                SiwHosts.modify(qa, QpState.ERR);
            }
            SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);
            WorkCompletion w = SiwHosts.one(h.a.cq);
            assertEquals(List.of(5L, WcStatus.WR_FLUSH_ERR), List.of(w.wrId(), w.status()), leaving + ": " + w);
            noEvent();
        }
    }

    /** A READ to the raw peer {@code s}, which reads its request and never answers: it waits in the ORQ. */
    private void readNobodyAnswers(QueuePair qa, Socket s) throws Exception {
        qa.postSend(new SendWr.RdmaRead(5, List.of(h.a.sge(0, 4096)), SIGNALED, 0x1000, 0x1234));
        new DataInputStream(s.getInputStream()).readFully(new byte[SiwHosts.READ_REQUEST_FPDU]);
        assertTrue(qa.query().qpState() == QpState.RTS);
    }
}
