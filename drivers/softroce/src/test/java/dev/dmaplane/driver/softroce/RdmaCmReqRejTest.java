package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.RejectReason;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static dev.dmaplane.driver.softroce.CmEnd.at;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The REJ of a REQ as {@code drivers/infiniband/core/cm.c} sends it, seen on the wire through a raw CM end
 * ({@link RawCm}): a REJ from REQ_RCVD ({@code cm_format_rej}) names no local communication ID (0), and the active
 * end still finds its connection by the remote ID alone ({@code cm_acquire_rejected_id}).
 */
@Timeout(60)
class RdmaCmReqRejTest extends RdmaCmTestBase {
    /**
     * {@code cm_format_rej} in REQ_RCVD: the server's {@code rdma_reject} of a request sends a REJ with local ID 0,
     * the client's ID as remote ID, message REQ and reason 28, and the client, in REQ_SENT, takes it: REJECTED.
     */
    @Test
    void aRejOfARequestReceivedNamesNoLocalId() {
        RawCm raw = new RawCm(h);
        CmId conn = request(ConnParam.of(null, 1, 1));
        int clientId = raw.lastIds(RawCm.REQ)[0];
        conn.reject(CmFlows.text("no"));
        assertEquals(RejectReason.CONSUMER_DEFINED, client.expect(CmEventType.REJECTED).status());
        assertArrayEquals(new int[]{0, clientId, RawCm.MSG_REQ, RejectReason.CONSUMER_DEFINED}, raw.lastRej(),
                "cm_format_rej in REQ_RCVD: local ID 0");
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
