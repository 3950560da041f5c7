package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.RejectReason;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static dev.dmaplane.driver.softroce.CmEnd.at;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

/**
 * The transaction IDs of the CM messages on the wire, read through a raw CM end ({@link RawCm}), as
 * {@code drivers/infiniband/core/cm.c} gives them: a REQ and a DREQ carry a new TID ({@code cm_form_tid} in
 * {@code cm_format_req} and {@code cm_format_dreq}); every answer carries the connection's {@code cm_id_priv->tid},
 * which {@code ib_send_cm_req} sets to its REQ's TID, {@code cm_req_handler} to the received REQ's and
 * {@code cm_dreq_handler} to the received DREQ's: the REP ({@code cm_format_rep}) and the REJ of a REQ
 * ({@code cm_format_rej}) the REQ's, the RTU ({@code cm_format_rtu}) the active side's own REQ's, which the REP
 * carried, the DREP ({@code cm_format_drep}) the DREQ's. {@code cm_issue_rej} and {@code cm_issue_drep}, which answer
 * without a connection, copy the received MAD's TID.
 */
@Timeout(60)
class RdmaCmTidTest extends RdmaCmTestBase {
    /** {@code RDMA_PS_TCP}'s service ID of port 7471, which nobody on rxe0 listens on. */
    private static final long SERVICE_ID = 0x0106_0000_0000_1D2FL;

    /**
     * A connection's life: the REP and the RTU carry the REQ's TID; the server's DREQ a TID of its own, and the
     * client's DREP the DREQ's.
     */
    @Test
    void theRepRtuAndDrepCarryTheTidOfWhatTheyAnswer() {
        RawCm raw = new RawCm(h);
        established();
        long req = raw.lastTid(RawCm.REQ);
        assertEquals(req, raw.lastTid(RawCm.REP), "cm_format_rep: the received REQ's TID");
        assertEquals(req, raw.lastTid(RawCm.RTU), "cm_format_rtu: the REQ's TID, as the REP carried it");

        CmFlows.disconnect(server, client);
        long dreq = raw.lastTid(RawCm.DREQ);
        assertNotEquals(req, dreq, "cm_format_dreq: cm_form_tid of the server's id");
        assertEquals(dreq, raw.lastTid(RawCm.DREP), "cm_format_drep: the received DREQ's TID");
    }

    /**
     * Both ends on rxe0, so one CM agent: the server's REP waits for the RTU with the REQ's TID while the client's
     * REQ, with that TID, still waits for the REP, two sends of one TID in one agent ({@code mad.c} keeps each its own
     * {@code ib_mad_send_buf}); the connection is established and taken down as any other.
     */
    @Test
    void aConnectionWithinOneDeviceWaitsWithOneTidTwice() {
        CmId l = CmFlows.listen(server, at("10.0.0.4", 7471), 4);
        CmFlows.connect(client, server, l, CLIENT, at("10.0.0.4", 7471));
        CmFlows.disconnect(client, server);
    }

    /** {@code rdma_reject} of a request (REQ_RCVD): the REJ carries the REQ's TID. */
    @Test
    void aRejOfARequestCarriesItsTid() {
        RawCm raw = new RawCm(h);
        CmId conn = request(ConnParam.of(null, 1, 1));
        conn.reject(null);
        client.expect(CmEventType.REJECTED);
        assertEquals(raw.lastTid(RawCm.REQ), raw.lastTid(RawCm.REJ), "cm_format_rej: cm_id_priv->tid");
    }

    /** A REQ nobody listens for: its REJ (invalid service ID) carries its TID. */
    @Test
    void theRejOfAReqNobodyListensForCarriesItsTid() {
        RawCm raw = new RawCm(h);
        CmFlows.listen(server, SERVER, 4);
        CmFlows.resolve(client, CLIENT, at("10.0.0.5", 7472));
        client.id.connect(ConnParam.of(null, 0, 0));
        assertEquals(RejectReason.INVALID_SERVICE_ID, client.expect(CmEventType.REJECTED).status());
        assertEquals(raw.lastTid(RawCm.REQ), raw.lastTid(RawCm.REJ));
    }

    /**
     * {@code cm_match_req}'s stale connection: {@code cm_issue_rej} answers the raw REQ with its TID (the raw agent's,
     * not the CM's), and the old connection's DREQ carries a TID of its own.
     */
    @Test
    void cmIssueRejAnswersAStaleReqWithItsTid() {
        RawCm raw = new RawCm(h);
        established();
        long connReq = raw.lastTid(RawCm.REQ);
        raw.req(0x5EED_0002, SERVICE_ID, h.core.device("rxe1").orElseThrow().nodeGuid(), server.qp.qpNum());
        long stale = raw.lastTid(RawCm.REQ);
        assertNotEquals(connReq, stale);
        eventually(() -> raw.countToRxe1(RawCm.REJ) == 1, CmEnd.WAIT, "the REJ of the stale REQ");
        assertEquals(stale, raw.lastTid(RawCm.REJ), "cm_issue_rej: the received REQ's TID");
        server.expect(CmEventType.DISCONNECTED);
        assertNotEquals(stale, raw.lastTid(RawCm.DREQ), "ib_send_cm_dreq: cm_form_tid");
    }

    /** {@code cm_issue_drep}: a DREQ no connection takes is answered with its TID. */
    @Test
    void cmIssueDrepAnswersWithTheDreqsTid() {
        RawCm raw = new RawCm(h);
        raw.dreq(0x7EEE_0101, 0x7EEE_0102, 0);
        eventually(() -> raw.drepSeen(0x7EEE_0102, 0x7EEE_0101), CmEnd.WAIT, "cm_issue_drep's DREP");
        assertEquals(raw.lastTid(RawCm.DREQ), raw.lastTid(RawCm.DREP));
    }
}
