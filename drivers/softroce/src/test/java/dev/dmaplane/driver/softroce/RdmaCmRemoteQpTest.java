package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.PortSpace;
import dev.dmaplane.rdma.cm.RejectReason;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;

import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The remote QP table of {@code drivers/infiniband/core/cm.c}, seen through a raw CM end ({@link RawCm}): a
 * connection enters it, keyed by the peer's CA GUID and QPN ({@code cm_insert_remote_qpn}), when the passive side
 * receives the REQ ({@code cm_req_handler}, {@code cm_match_req}) and when the active side receives the REP
 * ({@code cm_rep_handler}), and leaves it in time wait or IDLE ({@code cm_cleanup_timewait}). A REQ or a REP from a QP
 * the table holds is stale: {@code cm_issue_rej} rejects it with STALE_CONN and its TID, and the connection holding
 * the QP gets a DREQ if it is ESTABLISHED ({@code ib_send_cm_dreq}).
 */
@Timeout(60)
class RdmaCmRemoteQpTest extends RdmaCmTestBase {
    /** {@code RDMA_PS_TCP}'s service ID of port 7471, which nobody on rxe0 listens on. */
    private static final long SERVICE_ID = 0x0106_0000_0000_1D2FL;

    private long rxe1Guid() {
        return h.core.device("rxe1").orElseThrow().nodeGuid();
    }

    /**
     * The client's connection is in the table from the REP on, before its RTU: a client id without a QP after
     * CONNECT_RESPONSE (MRA_REP_SENT) holds the server's QP, so a REQ from that QP is rejected as stale (not passed to
     * the listeners, of which rxe0 has none: that would be INVALID_SERVICE_ID), and no DREQ goes, as the
     * connection is not ESTABLISHED.
     */
    @Test
    void aReqFromTheQpOfAConnectionBeingSetUpIsStale() {
        RawCm raw = new RawCm(h);
        acceptedByServerForClientWithoutQp();
        client.expect(CmEventType.CONNECT_RESPONSE);

        raw.req(0x5EED_0011, SERVICE_ID, rxe1Guid(), server.qp.qpNum());
        eventually(() -> raw.countToRxe1(RawCm.REJ) == 1, CmEnd.WAIT, "the REJ of the stale REQ");
        assertArrayEquals(new int[]{0, 0x5EED_0011, RawCm.MSG_REQ, RejectReason.STALE_CONN}, raw.lastRej(),
                "cm_match_req: cm_issue_rej with STALE_CONN");
        assertEquals(raw.lastTid(RawCm.REQ), raw.lastTid(RawCm.REJ));
        assertEquals(0, raw.countToRxe1(RawCm.DREQ), "ib_send_cm_dreq sends none before ESTABLISHED");
    }

    /**
     * {@code cm_rep_handler}: a REP for the client's second connection (its REQ lost on the way) that names the QP
     * and CA of its established first connection is stale: rejected with STALE_CONN naming the REP, with the REP's
     * TID, and the first connection is disconnected (DREQ, DISCONNECTED at the server); the second connection
     * takes nothing from the REP: no event, its REQ still waiting.
     */
    @Test
    void aRepFromTheQpOfAnEstablishedConnectionIsStale() {
        RawCm raw = new RawCm(h);
        established();
        raw.loseToRxe1(RawCm.REQ);
        CmId second = client.ch.createId(PortSpace.TCP);
        second.resolveAddr(CLIENT, SERVER, 2000);
        client.expect(CmEventType.ADDR_RESOLVED);
        second.resolveRoute(2000);
        client.expect(CmEventType.ROUTE_RESOLVED);
        second.connect(new ConnParam(null, 1, 1, 1, 7, 7, false, 0x99)); // no QP: conn_param->qp_num
        eventually(() -> raw.countToRxe1(RawCm.REQ) == 2, CmEnd.WAIT, "the second REQ, lost");
        int secondId = raw.lastIds(RawCm.REQ)[0];

        raw.rep(0x5EED_0012, secondId, server.qp.qpNum(), rxe1Guid());
        eventually(() -> raw.countToRxe1(RawCm.REJ) == 1, CmEnd.WAIT, "the REJ of the stale REP");
        assertArrayEquals(new int[]{secondId, 0x5EED_0012, RawCm.MSG_REP, RejectReason.STALE_CONN}, raw.lastRej(),
                "cm_issue_rej: the REP's IDs swapped, message REP, STALE_CONN");
        assertEquals(raw.lastTid(RawCm.REP), raw.lastTid(RawCm.REJ), "cm_issue_rej: the REP's TID");
        server.expect(CmEventType.DISCONNECTED);
        assertEquals(1, raw.countToRxe1(RawCm.DREQ), "the first connection's DREQ");
        assertEquals("CONNECT", second.state());
        assertEquals(Errno.ETIMEDOUT, fails(() -> client.ch.getEvent(Duration.ZERO)).errno(),
                "nothing at the client: the second connection is still in REQ_SENT");
    }
}
