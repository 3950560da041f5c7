package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.Optional;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

/**
 * Local errors of the transmit side, as {@code siw_qp_sq_process} ({@code siw_qp_tx.c}) handles a work request it
 * fails to process: {@code siw_qp_cm_drop(qp, 0)} drops the connection at once (the TERMINATE set up, if any, goes
 * out; CLOSE alone; the socket released) and never calls {@code siw_qp_llp_close}, so the QP stays in RTS with
 * nothing flushed; the request completes with LOC_QP_OP_ERR ({@code siw_sqe_complete}) and QP_FATAL is raised. A SEND
 * whose SGL {@code siw_check_sgl_tx} refuses sets up the TERMINATE of {@code siw_qp_sq_proc_tx}'s {@code tx_error}
 * (RDMAP layer, Local Catastrophic Error, code unspecified); a LOCAL_INV {@code siw_invalidate_stag} refuses sets up
 * none ({@code siw_qp_sq_proc_local}). Sends posted after are taken and sent nowhere ({@code tx_suspend}) until a
 * modify to ERR flushes them ({@code siw_qp_nextstate_from_rts}).
 */
@Timeout(60)
class SiwTxErrorTest {
    private final SiwHosts h = new SiwHosts(95, 96);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    /**
     * What follows the drop on {@code qa}: CLOSE alone, the request {@code wrId} completed with LOC_QP_OP_ERR, QP_FATAL,
     * the QP in RTS with its receive {@code 7} queued; a SEND posted then is taken and never completes until a modify
     * to ERR flushes it and the receive.
     */
    private void droppedInRts(QueuePair qa, long wrId) {
        IwCmEvent c = h.a.event();
        assertEquals(List.of(IwCmEvent.Type.CLOSE, Optional.empty()), List.of(c.type(), Optional.ofNullable(c.status())),
                "siw_qp_cm_drop(qp, 0): CLOSE alone");
        WorkCompletion w = SiwHosts.one(h.a.cq);
        assertEquals(List.of(wrId, WcStatus.LOC_QP_OP_ERR), List.of(w.wrId(), w.status()), w.toString());
        AsyncEvent e = h.a.asyncEvent();
        e.ack();
        assertEquals(EventType.QP_FATAL, e.type());
        assertNull(h.a.events.peek(), "nothing after CLOSE");
        assertEquals(QpState.RTS, qa.query().qpState(), "siw_qp_cm_drop(qp, 0) leaves the state alone");
        assertEquals(List.of(), h.a.cq.poll(4), "nothing flushed: the receive stays queued");
        qa.postSend(new SendWr.Send(9, List.of(h.a.sge(0, 64)), SIGNALED, null));
        assertEquals(List.of(), h.a.cq.poll(4), "an RTS QP takes the SEND and has no connection to send it on");
        qa.modify(QpAttr.builder().state(QpState.ERR).build());
        List<WorkCompletion> flushed = SiwHosts.poll(h.a.cq, 2);
        assertEquals(List.of("7 WR_FLUSH_ERR", "9 WR_FLUSH_ERR"),
                flushed.stream().map(f -> f.wrId() + " " + f.status()).sorted().toList(), flushed.toString());
        assertEquals(Optional.empty(), h.a.ctx.pollAsyncEvent().map(AsyncEvent::type), "no SQ_DRAINED: the ring was "
                + "empty (siw_post_send would have activated the SEND at once)");
    }

    /**
     * A SEND whose SGE names no region: {@code siw_check_sgl_tx} refuses it before anything of it is sent; the raw
     * peer reads the TERMINATE (RDMAP, Local Catastrophic Error, 0xff) and then the end of the stream.
     */
    @Test
    void aSendWhoseSglIsRefusedTerminatesAndLeavesTheQpInRts() throws Exception {
        QueuePair qa = h.a.rc();
        qa.postRecv(List.of(RecvWr.of(7, h.a.sge(1 << 20, 64))));
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address); Socket s = h.rawPeer(server, qa)) {
            qa.postSend(new SendWr.Send(1, List.of(new Sge(h.a.buf, 64, h.a.mr.lkey() ^ 0x5a00)), SIGNALED, null));
            byte[] wire = s.getInputStream().readAllBytes();
            assertEquals(Mpa.fpduLength(Iwarp.UNTAGGED_HDR + Iwarp.TERMINATE_BODY), wire.length,
                    "the TERMINATE, then the end");
            assertEquals(new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_LOCAL_CATASTROPHIC,
                    Terminate.RDMAP_UNSPECIFIED), SiwMpaTerminateTest.terminate(wire));
        }
        droppedInRts(qa, 1);
        assertEquals(1, SiwHosts.counter(h.da, "dmaplane_terminate_sent"));
    }

    /**
     * A LOCAL_INV of an STag that names nothing: {@code siw_invalidate_stag} answers {@code -EINVAL}, and
     * {@code siw_qp_sq_process} drops the connection with no TERMINATE set up: the raw peer reads the end of the
     * stream alone.
     */
    @Test
    void aLocalInvalidateThatFailsDropsTheConnectionWithoutTerminate() throws Exception {
        QueuePair qa = h.a.rc();
        qa.postRecv(List.of(RecvWr.of(7, h.a.sge(1 << 20, 64))));
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address); Socket s = h.rawPeer(server, qa)) {
            qa.postSend(new SendWr.LocalInv(1, List.of(), SIGNALED, 0x7777_7700));
            assertEquals(0, s.getInputStream().readAllBytes().length, "the end of the stream, no TERMINATE");
        }
        droppedInRts(qa, 1);
        assertEquals(0, SiwHosts.counter(h.da, "dmaplane_terminate_sent"));
    }
}
