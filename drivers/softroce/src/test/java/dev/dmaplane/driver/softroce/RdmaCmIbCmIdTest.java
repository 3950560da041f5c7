package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.RejectReason;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * An IB rdma_cm id keeps its {@code ib_cm_id} until {@code rdma_destroy_id}, whatever state the ib_cm_id reaches,
 * and the later calls answer as {@code drivers/infiniband/core/cma.c} over {@code cm.c} make them answer:
 * {@code cm_timewait_handler} leaves the ib_cm_id IDLE after time wait and {@code cma_ib_handler} only passes
 * TIMEWAIT_EXIT on, so {@code rdma_disconnect} still finds an ib_cm_id (the QP to ERR, DREQ and DREP refused by the
 * IDLE ib_cm_id and their errors dropped: 0) and {@code rdma_init_qp_attr} asks it ({@code ib_cm_init_qp_attr}:
 * EINVAL in IDLE, for INIT too); {@code rdma_accept} on a request rejected already walks {@code cma_accept_ib}:
 * the QP's move fails in {@code cma_modify_qp_rtr} (EINVAL from the IDLE ib_cm_id), the {@code reject:} path moves
 * the QP to ERR ({@code cma_modify_qp_err}) and its second REJ is refused by {@code ib_send_cm_rej} in IDLE, so
 * nothing more goes to the peer; a REP whose QP cannot move ({@code cma_rep_recv}) leaves the client its ib_cm_id
 * as well.
 */
@Timeout(60)
class RdmaCmIbCmIdTest extends RdmaCmTestBase {
    /** {@code CM_REJ_ATTR_ID}. */
    private static final int REJ = 0x12;

    /** {@code rdma_init_qp_attr} for INIT, RTR and RTS on {@code id}: each EINVAL. */
    private static void noQpAttributes(CmId id) {
        for (QpState to : List.of(QpState.INIT, QpState.RTR, QpState.RTS)) {
            assertEquals(Errno.EINVAL, fails(() -> id.initQpAttr(to)).errno(), "rdma_init_qp_attr " + to);
        }
    }

    /** After TIMEWAIT_EXIT at both ends, each id still answers with its IDLE ib_cm_id. */
    @Test
    void afterTimewaitExitTheIdsKeepTheirIbCmIds() {
        CmId conn = established();
        CmFlows.disconnect(client, server);
        for (CmEnd end : List.of(client, server)) {
            CmId id = end.id;
            assertEquals("DISCONNECT", id.state());
            id.disconnect(); // rdma_disconnect: an ib_cm_id, so no EINVAL; the IDLE ib_cm_id sends nothing
            assertEquals(QpState.ERR, end.qp.state());
            noQpAttributes(id);
            assertEquals(List.of(Errno.EINVAL, Errno.EINVAL, Errno.EINVAL),
                    List.of(fails(() -> id.connect(ConnParam.of(null, 1, 1))).errno(),
                            fails(() -> id.accept(ConnParam.of(null, 1, 1))).errno(),
                            fails(() -> id.reject(null)).errno()),
                    "connect (not ROUTE_RESOLVED), accept (not CONNECT), reject (ib_send_cm_rej in IDLE)");
            assertEquals("DISCONNECT", id.state());
        }
        conn.destroy();
        client.id.destroy();
    }

    /** A pending request's ib_cm_id (MRA_REQ_SENT) gives every transition's attributes; once rejected (IDLE), none. */
    @Test
    void aRejectedRequestHasNoQpAttributes() {
        CmId conn = request(ConnParam.of(null, 1, 1));
        QpAttr rtr = conn.initQpAttr(QpState.RTR);
        assertEquals(client.qp.qpNum(), rtr.destQpNum(), "cm_init_qp_rtr_attr in MRA_REQ_SENT");
        assertEquals(QpState.RTS, conn.initQpAttr(QpState.RTS).qpState());
        conn.reject(null);
        client.expect(CmEventType.REJECTED);
        noQpAttributes(conn);
        noQpAttributes(client.id); // the REJ received left the client's ib_cm_id IDLE too
    }

    /**
     * {@code rdma_accept} after {@code rdma_reject} on the same id: EINVAL, the QP moved to ERR on the way, and no
     * second REJ on the wire: a later request's REJ, sent by the same port after it, is the only other one.
     */
    @Test
    void acceptingARejectedRequestMovesItsQpToErrAndSendsNothing() {
        AtomicInteger rejs = new AtomicInteger();
        h.driver.fabric.loss = p -> {
            if (CmFlows.isCm(p, REJ)) {
                rejs.incrementAndGet();
            }
            return false;
        };
        CmId conn = request(ConnParam.of(null, 1, 1));
        server.resources(conn);
        conn.reject(CmFlows.text("no"));
        assertEquals(RejectReason.CONSUMER_DEFINED, client.expect(CmEventType.REJECTED).status());
        assertEquals(QpState.INIT, server.qp.state());

        assertEquals(Errno.EINVAL, fails(() -> conn.accept(ConnParam.of(null, 1, 1))).errno(),
                "cma_modify_qp_rtr: ib_cm_init_qp_attr in IDLE");
        assertEquals(QpState.ERR, server.qp.state(), "rdma_accept's reject: path, cma_modify_qp_err");
        assertEquals("CONNECT", conn.state());

        CmEnd other = new CmEnd(h.machine, h.core, "other");
        try {
            CmFlows.resolve(other, CLIENT, SERVER);
            other.id.connect(ConnParam.of(null, 1, 1));
            server.expect(CmEventType.CONNECT_REQUEST).id().reject(null);
            other.expect(CmEventType.REJECTED);
        } finally {
            other.close();
        }
        assertEquals(2, rejs.get(), "the first request's REJ and the second's; none from the failed accept");
        conn.destroy();
    }

    /**
     * A REP whose QP cannot move ({@code cma_rep_recv}, the client's QP put in ERR before the REP came): the QP's
     * move fails with EINVAL, a REJ goes to the server ({@code ib_send_cm_rej} in MRA_REP_SENT: REJECTED, reason 28,
     * its QP to ERR) and the client gets CONNECT_ERROR with the error; its id stays in CONNECT with the ib_cm_id the
     * REJ left IDLE ({@code cma_ib_handler} drops nothing), so {@code rdma_disconnect} returns 0 and
     * {@code rdma_init_qp_attr} is EINVAL.
     */
    @Test
    void aRepWhoseQpCannotMoveLeavesTheClientItsIbCmId() {
        CmId conn = request(ConnParam.of(null, 1, 1));
        server.resources(conn);
        client.qp.modify(QpAttr.builder().state(QpState.ERR).build());
        conn.accept(ConnParam.of(null, 1, 1));
        assertEquals(-Errno.EINVAL.number(), client.expect(CmEventType.CONNECT_ERROR).status(),
                "ib_modify_qp ERR to INIT");
        assertEquals(RejectReason.CONSUMER_DEFINED, server.expect(CmEventType.REJECTED).status());
        assertEquals(QpState.ERR, server.qp.state());
        assertEquals("CONNECT", client.id.state());
        client.id.disconnect();
        noQpAttributes(client.id);
    }

    /**
     * {@code rdma_accept} on a connection established already walks {@code cma_accept_ib} too: the QP cannot go
     * back to INIT (EINVAL from {@code ib_modify_qp}), the {@code reject:} path moves it to ERR, and
     * {@code ib_send_cm_rej} refuses a REJ in ESTABLISHED; the id stays in CONNECT.
     */
    @Test
    void acceptingAnEstablishedConnectionAgainMovesItsQpToErr() {
        CmId conn = established();
        assertEquals(Errno.EINVAL, fails(() -> conn.accept(ConnParam.of(null, 1, 1))).errno());
        assertEquals(QpState.ERR, server.qp.state(), "cma_modify_qp_err");
        assertEquals(QpState.RTS, client.qp.state());
        assertEquals("CONNECT", conn.state());
    }
}
