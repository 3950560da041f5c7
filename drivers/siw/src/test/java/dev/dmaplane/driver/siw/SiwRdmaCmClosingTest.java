package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * What rdma_cm applications see when one of them moves its connected siw QP to SQD or SQE: {@code siw_qp_cm_drop}
 * reports CLOSE to its iw_cm id ({@code siw_cm_upcall}), which {@code cm_close_handler} ({@code iwcm.c}) and
 * {@code cma_iw_handler} ({@code cma.c}) make DISCONNECTED; the peer's siw sees the stream end (PEER_CLOSE after a
 * clean close, or the TERMINATE), its QP goes to ERR and its application gets DISCONNECTED too. A later
 * {@code rdma_disconnect} finds the iw_cm id IDLE ({@code iw_cm_disconnect}) and changes nothing.
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
        client.id.connect(ConnParam.of(null, 4, 8));
        CmId conn = server.expect(CmEventType.CONNECT_REQUEST).id();
        server.resources(conn);
        conn.accept(ConnParam.of(null, 4, 8));
        client.expect(CmEventType.ESTABLISHED);
        server.expect(CmEventType.ESTABLISHED);
        client.qp.postRecv(List.of(RecvWr.of(1, client.sge(0, 64))));
        server.qp.postRecv(List.of(RecvWr.of(2, server.sge(0, 64))));
        return l;
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
        assertEquals(1L, ends.h.db.providers.get("siw0").hwCounters(1).get("dmaplane_terminate_received"));
        assertEquals(List.of(), client.cq.poll(4), "TERMINATE flushes nothing");

        client.id.disconnect();
        assertEquals(QpState.SQE, client.qp.query().qpState());
        CmEnds.noEvent(client);
        CmEnds.noEvent(server);
        l.destroy();
    }
}
