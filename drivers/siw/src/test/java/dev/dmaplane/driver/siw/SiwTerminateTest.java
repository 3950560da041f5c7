package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;
import java.util.Optional;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Remote access errors reported to the peer with a TERMINATE (RFC 5040 sections 4.8 and 7, RFC 5041 section 7;
 * {@code siw_init_terminate}, {@code siw_send_terminate}) and what the peer that receives it does, as Linux siw does
 * it: {@code siw_proc_terminate} only logs the error and returns {@code -ECONNRESET}, for which
 * {@code siw_tcp_rx_data} completes nothing and drops the connection ({@code siw_qp_cm_drop(qp, 1)}); the endpoint's
 * {@code SIW_CM_WORK_CLOSE_LLP} reports CLOSE (no DISCONNECT) and its release ({@code siw_qp_llp_close}) moves the QP
 * to ERR, where {@code siw_sq_flush} and {@code siw_rq_flush} complete everything outstanding with WR_FLUSH_ERR, the
 * request the TERMINATE concerns included. No async event on that side. The responder that found the error does
 * what Linux siw does where it found it: an error of the receive path ({@code siw_proc_write} finding no region for
 * the STag, {@code siw_proc_send} finding no receive) raises no async event, and {@code siw_tcp_rx_data}'s
 * {@code siw_qp_cm_drop(qp, 1)} sends the TERMINATE, reports CLOSE alone and moves the QP to ERR; a READ source
 * refused while the response is built ({@code siw_qp_sq_process}) drops the connection with
 * {@code siw_qp_cm_drop(qp, 0)}, which reports CLOSE alone and leaves the QP in RTS with nothing flushed, then
 * raises QP_REQ_ERR.
 */
@Timeout(60)
class SiwTerminateTest {
    private final SiwHosts h = new SiwHosts(35, 36);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    /**
     * The side that receives the TERMINATE, once its CM reported the end: CLOSE with no status and nothing before or
     * after it ({@code SIW_CM_WORK_CLOSE_LLP}), no async event (the event would have been raised before CLOSE), the
     * QP in ERR.
     */
    static void closedByTerminate(SiwHosts.Host host, QueuePair q) {
        closedByTerminate(host, q, false);
    }

    /**
     * {@link #closedByTerminate(SiwHosts.Host, QueuePair)} for a requester that may still have had requests in its
     * send queue, posted and not yet taken by its transmit thread, when the TERMINATE came ({@code mayDrain}): then
     * {@code siw_qp_llp_close}'s {@code siw_sq_flush} raises SQ_DRAINED, once, and nothing else.
     */
    static void closedByTerminate(SiwHosts.Host host, QueuePair q, boolean mayDrain) {
        IwCmEvent e = host.event();
        assertEquals(List.of(IwCmEvent.Type.CLOSE, Optional.empty()), List.of(e.type(), Optional.ofNullable(e.status())),
                "CLOSE alone: siw_proc_terminate's -ECONNRESET drops the connection, it reports no DISCONNECT");
        assertNull(host.events.peek(), "nothing after CLOSE");
        Optional<EventType> ev = host.ctx.pollAsyncEvent().map(AsyncEvent::type);
        if (mayDrain && ev.isPresent()) {
            assertEquals(EventType.SQ_DRAINED, ev.get(), "siw_sq_flush found requests never started");
            ev = host.ctx.pollAsyncEvent().map(AsyncEvent::type);
        }
        assertEquals(Optional.empty(), ev, "siw_proc_terminate and siw_qp_llp_close raise no other async event");
        assertEquals(QpState.ERR, q.query().qpState());
    }

    /**
     * The side that found the error and sent the TERMINATE, once its CM reported the end: CLOSE with no status and
     * nothing before or after it ({@code SIW_CM_WORK_CLOSE_LLP}), no async event ({@code siw_get_trailer},
     * {@code siw_proc_send}, {@code siw_proc_write} for an unknown STag, {@code siw_init_rresp} raise none), the QP
     * in ERR ({@code siw_qp_llp_close}).
     */
    static void closedAfterItsTerminate(SiwHosts.Host host, QueuePair q) {
        IwCmEvent e = host.event();
        assertEquals(List.of(IwCmEvent.Type.CLOSE, Optional.empty()), List.of(e.type(), Optional.ofNullable(e.status())),
                "CLOSE alone: siw_qp_cm_drop(qp, 1) reports no DISCONNECT, whatever the peer does after");
        assertNull(host.events.peek(), "nothing after CLOSE");
        assertEquals(Optional.empty(), host.ctx.pollAsyncEvent().map(AsyncEvent::type),
                "the receive path raised no async event");
        assertEquals(QpState.ERR, q.query().qpState());
    }

    /**
     * A READ of a source STag the responder does not know, a second READ behind it and a receive: the responder
     * refuses the first with a TERMINATE. The requester completes nothing apart: both READs and the receive complete
     * with WR_FLUSH_ERR in queue order ({@code siw_sq_flush} empties the ORQ, {@code siw_rq_flush} the receive
     * queue), and its consumer gets CLOSE alone. The responder finds the source refused when it builds the response
     * ({@code siw_qp_sq_proc_tx}: {@code siw_check_sgl_tx}), and {@code siw_qp_sq_process}'s error path drops the
     * connection with {@code siw_qp_cm_drop(qp, 0)}: the TERMINATE, CLOSE alone, the socket released, but no
     * {@code siw_qp_llp_close}: the QP stays in RTS, its receive queued, and QP_REQ_ERR is raised. A SEND posted
     * then is taken and sent nowhere ({@code tx_suspend}); a modify to ERR flushes both
     * ({@code siw_qp_nextstate_from_rts}).
     */
    @Test
    void aReadOfAnUnknownStagIsFlushedOnTheRequesterWhichGetsCloseAlone() {
        QueuePair[] p = h.pair();
        p[0].postRecv(List.of(RecvWr.of(7, h.a.sge(1 << 20, 64))));
        p[1].postRecv(List.of(RecvWr.of(8, h.b.sge(0, 64))));
        int bad = h.b.mr.rkey() ^ 0x5a00;
        p[0].postSend(new SendWr.RdmaRead(1, List.of(h.a.sge(0, 4096)), SIGNALED, h.b.buf, bad));
        p[0].postSend(new SendWr.RdmaRead(2, List.of(h.a.sge(8192, 4096)), SIGNALED, h.b.buf, h.b.mr.rkey()));

        closedByTerminate(h.a, p[0]);
        List<WorkCompletion> mine = SiwHosts.poll(h.a.cq, 3);
        assertEquals(List.of(1L, 2L, 7L), mine.stream().map(WorkCompletion::wrId).sorted().toList(), mine.toString());
        assertTrue(mine.stream().allMatch(c -> c.status() == WcStatus.WR_FLUSH_ERR),
                "the READ the TERMINATE concerns is flushed with the rest, not failed apart: " + mine);
        assertEquals(List.of(1L, 2L), mine.stream().map(WorkCompletion::wrId).filter(id -> id != 7).toList(),
                "the send queue in order");
        assertEquals(1, SiwHosts.counter(h.db, "dmaplane_terminate_sent"));
        assertEquals(1, SiwHosts.counter(h.da, "dmaplane_terminate_received"));

        IwCmEvent c = h.b.event();
        assertEquals(List.of(IwCmEvent.Type.CLOSE, Optional.empty()), List.of(c.type(), Optional.ofNullable(c.status())),
                "siw_qp_cm_drop(qp, 0): CLOSE alone");
        assertEquals(EventType.QP_REQ_ERR, h.b.asyncEvent().type(), "siw_qp_sq_process: a READ RESPONSE failed");
        assertNull(h.b.events.peek(), "nothing after CLOSE");
        assertEquals(QpState.RTS, p[1].query().qpState(), "siw_qp_cm_drop(qp, 0) leaves the state alone");
        assertEquals(List.of(), h.b.cq.poll(4), "nothing flushed: the receive stays queued");
        p[1].postSend(new SendWr.Send(9, List.of(h.b.sge(0, 64)), SIGNALED, null));
        assertEquals(List.of(), h.b.cq.poll(4), "an RTS QP takes the SEND and has no connection to send it on");
        p[1].modify(QpAttr.builder().state(QpState.ERR).build());
        List<WorkCompletion> flushed = SiwHosts.poll(h.b.cq, 2);
        assertEquals(List.of("8 WR_FLUSH_ERR", "9 WR_FLUSH_ERR"),
                flushed.stream().map(w -> w.wrId() + " " + w.status()).sorted().toList(),
                "the modify to ERR flushes both: " + flushed);
    }

    /**
     * An RDMA WRITE to an unknown STag has completed on the requester (iWARP acknowledges nothing); the responder's
     * TERMINATE then ends the requester's QP: its receive flushed, CLOSE alone, no async event. The responder
     * ({@code siw_proc_write}: {@code siw_mem_id2obj} finds no region) raises no async event either, reports CLOSE
     * alone and ends in ERR with its receive flushed.
     */
    @Test
    void aWriteToAnUnknownStagEndsTheRequestersQpAfterItCompleted() {
        QueuePair[] p = h.pair();
        p[0].postRecv(List.of(RecvWr.of(7, h.a.sge(1 << 20, 64))));
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 4096)), SIGNALED, h.b.buf,
                h.b.mr.rkey() ^ 0x5a00));
        WorkCompletion w = SiwHosts.one(h.a.cq);
        assertEquals(WcStatus.SUCCESS, w.status(), "handed to TCP: iWARP has no acknowledgements");
        WorkCompletion flushed = SiwHosts.one(h.a.cq);
        assertEquals(WcStatus.WR_FLUSH_ERR, flushed.status(), "the TERMINATE moved the requester to ERR");
        assertEquals(7, flushed.wrId());
        closedByTerminate(h.a, p[0]);
        closedAfterItsTerminate(h.b, p[1]);
        assertEquals(1, SiwHosts.counter(h.db, "dmaplane_terminate_sent"));
        assertEquals(1, SiwHosts.counter(h.da, "dmaplane_terminate_received"));
    }

    /**
     * A SEND the responder has no receive for ({@code siw_proc_send}: {@code siw_rqe_get} finds none, a TERMINATE of
     * the DDP layer, Untagged Buffer Error), a READ behind it and a receive: the SEND completed once TCP took it
     * (iWARP acknowledges nothing), and the TERMINATE it caused ends the requester's QP like any other: the READ and
     * the receive complete with WR_FLUSH_ERR, CLOSE alone, no async event. The responder raises no async event
     * either ({@code siw_proc_send} calls no {@code siw_qp_event} for it), reports CLOSE alone and ends in ERR.
     */
    @Test
    void aSendWithoutAReceiveHasCompletedAndTheTerminateFlushesTheRest() {
        QueuePair[] p = h.pair();
        p[0].postRecv(List.of(RecvWr.of(7, h.a.sge(1 << 20, 64))));
        p[0].postSend(new SendWr.Send(1, List.of(h.a.sge(0, 64)), SIGNALED, null));
        p[0].postSend(new SendWr.RdmaRead(2, List.of(h.a.sge(8192, 4096)), SIGNALED, h.b.buf, h.b.mr.rkey()));

        closedByTerminate(h.a, p[0]);
        List<WorkCompletion> mine = SiwHosts.poll(h.a.cq, 3);
        assertEquals(List.of(List.of(1L, WcStatus.SUCCESS), List.of(2L, WcStatus.WR_FLUSH_ERR)),
                mine.stream().filter(c -> c.wrId() != 7).map(c -> List.of(c.wrId(), c.status())).toList(),
                "the SEND was TCP's before the TERMINATE came; the READ behind it is flushed: " + mine);
        assertEquals(List.of(7L, WcStatus.WR_FLUSH_ERR), mine.stream().filter(c -> c.wrId() == 7)
                .map(c -> List.of(c.wrId(), c.status())).findFirst().orElseThrow());
        assertEquals(1, SiwHosts.counter(h.db, "dmaplane_terminate_sent"));
        assertEquals(1, SiwHosts.counter(h.da, "dmaplane_terminate_received"));
        closedAfterItsTerminate(h.b, p[1]);
    }
}
