package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.RejectReason;
import dev.dmaplane.rdma.verbs.QpState;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;

import static dev.dmaplane.driver.softroce.CmEnd.at;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

/**
 * The REJ of a REQ as {@code drivers/infiniband/core/cm.c} sends it, seen on the wire through a raw CM end
 * ({@link RawCm}): a REJ from REQ_RCVD ({@code cm_format_rej}) names no local communication ID (0), one from
 * MRA_REQ_SENT (a request waiting on its owner, {@code ib_prepare_cm_mra}) names it, and the active end finds its
 * connection by the remote ID alone either way ({@code cm_acquire_rejected_id}); a REQ from a remote QP that
 * still has a connection here is stale ({@code cm_match_req}): it is rejected with STALE_CONN by
 * {@code cm_issue_rej}, and the old connection gets a DREQ ({@code ib_send_cm_dreq}).
 */
@Timeout(60)
class RdmaCmReqRejTest extends RdmaCmTestBase {
    /** {@code RDMA_PS_TCP}'s service ID of port 7471, which nobody on rxe0 listens on. */
    private static final long SERVICE_ID = 0x0106_0000_0000_1D2FL;
    /** The raw REQ's local communication ID, which no connection knows. */
    private static final int RAW_ID = 0x5EED_0001;

    private void noEvent(CmEnd end) {
        assertEquals(Errno.ETIMEDOUT, fails(() -> end.ch.getEvent(Duration.ZERO)).errno(), "no event");
    }

    /**
     * {@code cm_match_req}: a REQ to the client from the server's QP and CA GUID while the two are connected
     * ({@code cm_insert_remote_qpn} finds the connection) gets a REJ with local ID 0, the REQ's ID as remote ID,
     * message REQ, reason 10 (stale connection); and the client's connection sends the server a DREQ naming both
     * IDs. The server gets DISCONNECTED, the client nothing (its QP still in RTS, its id in CONNECT) until the
     * server's DREP: DISCONNECTED ({@code cma_ib_handler} on DREP_RECEIVED), then TIMEWAIT_EXIT at both ends.
     */
    @Test
    void aReqFromAConnectedQpIsRejectedAndTheOldConnectionDisconnected() {
        RawCm raw = new RawCm(h);
        established();
        int[] rep = raw.lastIds(RawCm.REP);
        long rxe1Guid = h.core.device("rxe1").orElseThrow().nodeGuid();

        raw.req(RAW_ID, SERVICE_ID, rxe1Guid, server.qp.qpNum());
        eventually(() -> raw.countToRxe1(RawCm.REJ) == 1, CmEnd.WAIT, "the REJ of the stale REQ");
        assertArrayEquals(new int[]{0, RAW_ID, RawCm.MSG_REQ, RejectReason.STALE_CONN}, raw.lastRej(),
                "cm_issue_rej: local ID 0, the REQ's ID, message REQ, STALE_CONN");
        server.expect(CmEventType.DISCONNECTED);
        assertEquals(1, raw.countToRxe1(RawCm.DREQ));
        assertArrayEquals(new int[]{rep[1], rep[0]}, raw.lastIds(RawCm.DREQ), "the old connection's DREQ");
        noEvent(client);
        assertEquals("CONNECT", client.id.state());
        assertEquals(QpState.RTS, client.qp.state(), "cm_match_req leaves the QP to the consumer");

        server.id.disconnect();
        client.expect(CmEventType.DISCONNECTED);
        client.expect(CmEventType.TIMEWAIT_EXIT);
        server.expect(CmEventType.TIMEWAIT_EXIT);
    }

    /**
     * {@code cm_format_rej} in MRA_REQ_SENT, where {@code cma_ib_req_handler}'s {@code ib_prepare_cm_mra} left the
     * request once the listener queued CONNECT_REQUEST: the server's {@code rdma_reject} sends a REJ with its local
     * ID, the client's ID as remote ID, message REQ and reason 28, and the client, in REQ_SENT, takes it: REJECTED.
     */
    @Test
    void aRejOfARequestWaitingOnItsOwnerNamesItsLocalId() {
        RawCm raw = new RawCm(h);
        CmId conn = request(ConnParam.of(null, 1, 1));
        int clientId = raw.lastIds(RawCm.REQ)[0];
        conn.reject(CmFlows.text("no"));
        assertEquals(RejectReason.CONSUMER_DEFINED, client.expect(CmEventType.REJECTED).status());
        int[] rej = raw.lastRej();
        assertNotEquals(0, rej[0], "cm_format_rej in MRA_REQ_SENT: the local ID");
        assertArrayEquals(new int[]{clientId, RawCm.MSG_REQ, RejectReason.CONSUMER_DEFINED},
                new int[]{rej[1], rej[2], rej[3]});
    }

    /**
     * A REQ nobody listens for is rejected from REQ_RCVD as {@code cm_issue_rej} rejects it in {@code cm_match_req}:
     * local ID 0, the REQ's ID, message REQ, reason 8 (invalid service ID).
     */
    @Test
    void aRejOfAReqNobodyListensForNamesNoLocalId() {
        RawCm raw = new RawCm(h);
        CmFlows.listen(server, SERVER, 4);
        CmFlows.resolve(client, CLIENT, at("10.0.0.5", 7472));
        client.id.connect(ConnParam.of(null, 0, 0));
        assertEquals(RejectReason.INVALID_SERVICE_ID, client.expect(CmEventType.REJECTED).status());
        assertArrayEquals(new int[]{0, raw.lastIds(RawCm.REQ)[0], RawCm.MSG_REQ, RejectReason.INVALID_SERVICE_ID},
                raw.lastRej());
    }
}
