package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.List;
import java.util.Optional;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * What rdma_cm applications see when one of them moves its connected siw QP to SQD or SQE: {@code siw_qp_cm_drop}
 * reports CLOSE to its iw_cm id ({@code siw_cm_upcall}), which {@code cm_close_handler} ({@code iwcm.c}) and
 * {@code cma_iw_handler} ({@code cma.c}) make DISCONNECTED; the peer's siw sees the stream end (PEER_CLOSE after a
 * clean close, or the TERMINATE), its QP goes to ERR and its application gets DISCONNECTED too. A later
 * {@code rdma_disconnect} finds the iw_cm id IDLE ({@code iw_cm_disconnect}) and changes nothing. The same when
 * siw itself ends the connection over an error it found and sent a TERMINATE for ({@code siw_qp_cm_drop}: CLOSE
 * alone): both ends are DISCONNECTED once.
 */
@Timeout(60)
class SiwRdmaCmClosingTest {
    private final CmEnds ends = new CmEnds(69, 70, 7477);
    private final SiwRdmaCmTest.End client = ends.client;
    private final SiwRdmaCmTest.End server = ends.server;

    @AfterEach
    void close() {
        ends.close();
    }

    /** A client and a server connected through the rdma_cm, each QP in RTS with a receive posted; the listener. */
    private CmId connected() {
        CmId l = ends.listen();
        ends.resolve();
        ends.connect();
        client.qp.postRecv(List.of(RecvWr.of(1, client.sge(0, 64))));
        server.qp.postRecv(List.of(RecvWr.of(2, server.sge(0, 64))));
        return l;
    }

    private static Optional<EventType> asyncEvent(SiwRdmaCmTest.End end, Duration wait) {
        return end.id.verbs().getAsyncEvent(wait).map(AsyncEvent::type);
    }

    /** The server saw the connection end: DISCONNECTED, its QP in ERR with its receive flushed. */
    private void serverDisconnected() {
        server.expect(CmEventType.DISCONNECTED);
        assertEquals(QpState.ERR, server.qp.query().qpState());
        WorkCompletion w = SiwHosts.one(server.cq);
        assertEquals(List.of(2L, WcStatus.WR_FLUSH_ERR), List.of(w.wrId(), w.status()));
    }

    /**
     * SQD ({@code siw_qp_nextstate_from_rts} to CLOSING): the client is DISCONNECTED with its QP in SQD and its
     * receive flushed ({@code siw_rq_flush}); the server, after the clean close, is DISCONNECTED with its QP in ERR.
     */
    @Test
    void sqdIsDisconnectedAtBothEnds() {
        CmId l = connected();
        client.qp.modify(QpAttr.builder().state(QpState.SQD).build());
        client.expect(CmEventType.DISCONNECTED);
        assertEquals(QpState.SQD, client.qp.query().qpState());
        WorkCompletion w = SiwHosts.one(client.cq);
        assertEquals(List.of(1L, WcStatus.WR_FLUSH_ERR), List.of(w.wrId(), w.status()));
        serverDisconnected();

        client.id.disconnect();
        assertEquals(QpState.SQD, client.qp.query().qpState(), "iw_cm_disconnect on an IDLE iw_cm id");
        CmEnds.noEvent(client);
        CmEnds.noEvent(server);
        l.destroy();
    }

    /**
     * SQE ({@code siw_qp_nextstate_from_rts} to TERMINATE): the client is DISCONNECTED with its QP in SQE and its
     * receive still queued; the server took the TERMINATE and is DISCONNECTED with its QP in ERR.
     */
    @Test
    void sqeIsDisconnectedAtBothEndsAndTheServerGetsTheTerminate() {
        CmId l = connected();
        client.qp.modify(QpAttr.builder().state(QpState.SQE).build());
        client.expect(CmEventType.DISCONNECTED);
        assertEquals(QpState.SQE, client.qp.query().qpState());
        serverDisconnected();
        assertEquals(1L, SiwHosts.counter(ends.h.db, "dmaplane_terminate_received"));
        assertEquals(List.of(), client.cq.poll(4), "TERMINATE flushes nothing");

        client.id.disconnect();
        assertEquals(QpState.SQE, client.qp.query().qpState());
        CmEnds.noEvent(client);
        CmEnds.noEvent(server);
        l.destroy();
    }

    /**
     * A second SEND the server has no receive for, through the rdma_cm: the server's siw finds none
     * ({@code siw_proc_send}), raises no async event and drops the connection ({@code siw_qp_cm_drop(qp, 1)}: the
     * TERMINATE, then CLOSE alone, which {@code cma_iw_handler} makes DISCONNECTED), its QP in ERR; the client takes
     * the TERMINATE ({@code siw_proc_terminate}) and is DISCONNECTED, its receive flushed. Neither side gets an
     * async event, and each gets DISCONNECTED once.
     */
    @Test
    void aSendWithoutAReceiveIsDisconnectedAtBothEndsWithoutAnAsyncEvent() {
        CmId l = connected();
        client.qp.postSend(new SendWr.Send(3, List.of(client.sge(0, 64)), SIGNALED, null));
        client.qp.postSend(new SendWr.Send(4, List.of(client.sge(0, 64)), SIGNALED, null));
        server.expect(CmEventType.DISCONNECTED);
        assertEquals(QpState.ERR, server.qp.query().qpState());
        assertEquals(Optional.empty(), asyncEvent(server, Duration.ZERO), "siw_proc_send raises none");
        WorkCompletion first = SiwHosts.one(server.cq);
        assertEquals(List.of(2L, WcStatus.SUCCESS), List.of(first.wrId(), first.status()), "the first SEND's receive");
        client.expect(CmEventType.DISCONNECTED);
        assertEquals(QpState.ERR, client.qp.query().qpState());
        assertEquals(List.of("1 WR_FLUSH_ERR", "3 SUCCESS", "4 SUCCESS"), SiwHosts.poll(client.cq, 3).stream()
                .map(w -> w.wrId() + " " + w.status()).sorted().toList());
        assertEquals(Optional.empty(), asyncEvent(client, Duration.ZERO), "siw_proc_terminate raises none");

        client.id.disconnect();
        server.id.disconnect();
        CmEnds.noEvent(client);
        CmEnds.noEvent(server);
        l.destroy();
    }

    /**
     * A READ whose source the server refuses, through the rdma_cm: the server finds it when it builds the response
     * ({@code siw_qp_sq_proc_tx}) and drops the connection at once ({@code siw_qp_cm_drop(qp, 0)}): DISCONNECTED,
     * QP_REQ_ERR, its QP still in RTS with its receive queued, as no {@code siw_qp_llp_close} runs. A later
     * {@code rdma_disconnect} moves the QP to SQD first (librdmacm's {@code ucma_modify_qp_sqd}: siw's CLOSING with
     * the transmit side idle, {@code siw_rq_flush} flushing the receive) and then finds the iw_cm id IDLE, which
     * {@code iw_cm_disconnect} leaves so. The client takes the TERMINATE: DISCONNECTED, its READ and receive flushed.
     */
    @Test
    void aRefusedReadSourceIsDisconnectedAtBothEndsAndLeavesTheServerInRts() {
        CmId l = connected();
        client.qp.postSend(new SendWr.RdmaRead(3, List.of(client.sge(4096, 64)), SIGNALED, server.buf,
                server.mr.rkey() ^ 0x5a00));
        server.expect(CmEventType.DISCONNECTED);
        assertEquals(Optional.of(EventType.QP_REQ_ERR), asyncEvent(server, SiwHosts.WAIT));
        assertEquals(QpState.RTS, server.qp.query().qpState());
        assertEquals(List.of(), server.cq.poll(4), "nothing flushed");
        client.expect(CmEventType.DISCONNECTED);
        assertEquals(QpState.ERR, client.qp.query().qpState());
        assertEquals(List.of("1 WR_FLUSH_ERR", "3 WR_FLUSH_ERR"), SiwHosts.poll(client.cq, 2).stream()
                .map(w -> w.wrId() + " " + w.status()).sorted().toList());

        server.id.disconnect();
        assertEquals(QpState.SQD, server.qp.query().qpState(), "ucma_modify_qp_sqd: siw's CLOSING");
        WorkCompletion flushed = SiwHosts.one(server.cq);
        assertEquals(List.of(2L, WcStatus.WR_FLUSH_ERR), List.of(flushed.wrId(), flushed.status()), "siw_rq_flush");
        CmEnds.noEvent(client);
        CmEnds.noEvent(server);
        l.destroy();
    }
}
