package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.RejectReason;
import dev.dmaplane.rdma.verbs.QpState;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * {@code rdma_reject} on the active side, as {@code drivers/infiniband/core/cma.c} and {@code cm.c} have it:
 * {@code rdma_reject} asks only that the id has an {@code ib_cm_id} and calls {@code ib_send_cm_rej}, whose
 * {@code cm_send_rej_locked} decides by the ib_cm_id's state. An active id sends a REJ in REQ_SENT (before the REP) and
 * in MRA_REP_SENT (an id without a QP, after CONNECT_RESPONSE: {@code cma_ib_handler}'s {@code ib_prepare_cm_mra}),
 * each leaving its ib_cm_id IDLE ({@code cm_reset_to_idle}); the REJ carries reason 28 (consumer defined) and the
 * private data ({@code cm_format_rej}). In MRA_REP_SENT it names the REP and both communication IDs, so the passive
 * side's {@code cm_rej_handler} takes it in REP_SENT and {@code cma_ib_handler} moves its QP to ERR and reports
 * REJECTED with the reason. In REQ_SENT it names no remote ID (the active side knows none yet) and the message rejected
 * is "other", so {@code cm_acquire_rejected_id} finds no connection at the passive side: nothing happens there, and the
 * REP it sends later is dropped by the IDLE ib_cm_id ({@code cm_rep_handler}), so the passive side ends with
 * UNREACHABLE after the REP's retries. No event follows at the rejecting side, its id stays in CONNECT and its QP as it
 * was; later calls answer as the IDLE ib_cm_id makes them: {@code rdma_reject} EINVAL, {@code rdma_init_qp_attr}
 * EINVAL, {@code rdma_disconnect} 0.
 */
@Timeout(60)
class RdmaCmActiveRejectTest extends RdmaCmTestBase {
    /** An id without a QP after CONNECT_RESPONSE (MRA_REP_SENT) rejects the REP: REJECTED, reason 28, at the server. */
    @Test
    void aClientWithoutQpRejectsTheRep() {
        CmId conn = acceptedByServerForClientWithoutQp();
        CmId id = client.id;
        assertEquals(server.qp.qpNum(), client.expect(CmEventType.CONNECT_RESPONSE).param().qpNum());
        assertEquals(QpState.RTS, server.qp.state(), "cma_accept_ib moved it before the REP");

        id.reject(CmFlows.text("changed my mind"));
        CmEvent rej = server.expect(CmEventType.REJECTED);
        assertEquals(RejectReason.CONSUMER_DEFINED, rej.status());
        assertEquals("changed my mind", new String(Arrays.copyOf(rej.param().privateData(), 15),
                StandardCharsets.US_ASCII), "the REJ's private data");
        assertEquals(QpState.ERR, server.qp.state(), "cma_ib_handler: cma_modify_qp_err on REJECTED");
        assertEquals("CONNECT", conn.state());

        assertEquals("CONNECT", id.state(), "rdma_reject moves no state");
        assertEquals(List.of(Errno.EINVAL, Errno.EINVAL, Errno.EINVAL),
                List.of(fails(() -> id.reject(null)).errno(), fails(id::establish).errno(),
                        fails(() -> id.initQpAttr(QpState.INIT)).errno()),
                "reject (ib_send_cm_rej in IDLE), establish (no REP waits), init_qp_attr (IDLE)");
        id.disconnect(); // an ib_cm_id: DREQ and DREP refused in IDLE, their errors dropped
        assertEquals(Errno.ETIMEDOUT, fails(() -> client.ch.getEvent(Duration.ZERO)).errno(), "no event of its own");
    }

    /**
     * An id rejects its own REQ before the REP (REQ_SENT): the server hears nothing of it, and its later REP goes
     * unanswered until UNREACHABLE; the client's ib_cm_id is IDLE at once and its QP stays in INIT.
     */
    @Test
    void aClientRejectsItsRequestBeforeTheRep() {
        h.core.cm().setCmResponseTimeout(8); // the REP waits 1 ms for the RTU
        h.core.cm().setMaxCmRetries(2);
        CmId conn = request(ConnParam.of(null, 1, 1));
        CmId id = client.id;
        assertEquals(QpState.INIT, id.initQpAttr(QpState.INIT).qpState(), "cm_init_qp_init_attr in REQ_SENT");

        id.reject(CmFlows.text("too late"));
        assertEquals(Errno.EINVAL, fails(() -> id.initQpAttr(QpState.INIT)).errno(), "IDLE: cm_reset_to_idle");
        assertEquals(Errno.EINVAL, fails(() -> id.reject(null)).errno(), "ib_send_cm_rej in IDLE");
        assertEquals(QpState.INIT, client.qp.state(), "rdma_reject leaves the QP as it is");
        assertEquals("CONNECT", id.state());

        server.resources(conn);
        conn.accept(ConnParam.of(null, 1, 1));
        assertEquals(-Errno.ETIMEDOUT.number(), server.expect(CmEventType.UNREACHABLE).status(),
                "the REP's retries ran out: the REJ found nothing at the server, the client dropped the REP");
        assertEquals(QpState.RTS, server.qp.state(), "cma_ib_handler moves nothing on UNREACHABLE");
        assertEquals(Errno.ETIMEDOUT, fails(() -> client.ch.getEvent(Duration.ZERO)).errno(),
                "no event at the client: the REP met an IDLE ib_cm_id");
        id.disconnect();
        assertEquals(QpState.ERR, client.qp.state(), "rdma_disconnect: cma_modify_qp_err, then nothing sent");
    }
}
