package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.RejectReason;
import dev.dmaplane.rdma.verbs.QpState;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;

import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The IB CM's REJ and time wait as {@code drivers/infiniband/core/cm.c} has them, seen through the rdma_cm over
 * Soft-RoCE, with REJs and DREQs of a raw CM end ({@link RawCm}) where no real peer would send them. A REJ once the
 * REP was received, when established, or while the DREQ waits puts the connection in time wait
 * ({@code cm_rej_handler}; the waiting DREQ cancelled first) and is REJECTED at the rdma_cm id, which is still in
 * CONNECT ({@code cma_ib_handler}); {@code cm_acquire_rejected_id} takes a REJ only for the connection both its IDs
 * name. In time wait a DREQ is answered with a DREP ({@code cm_dreq_handler}); {@code cm_enter_timewait} has taken
 * the connection out of the remote tables ({@code cm_remove_remote}), and {@code cm_timewait_handler} leaves it IDLE
 * in the local ID table until {@code ib_destroy_cm_id}, so a DREQ after the time wait is dropped while the id lives
 * and answered by {@code cm_issue_drep} once it is destroyed.
 */
@Timeout(60)
class RdmaCmTimewaitTest extends RdmaCmTestBase {
    /** How long the tests give a time wait (512 ms here: {@code cm_convert_to_ms} of the ack timeout 17) to end. */
    private static final Duration TIMEWAIT_ENDS = Duration.ofSeconds(10);

    private void noEvent(CmEnd end) {
        assertEquals(Errno.ETIMEDOUT, fails(() -> end.ch.getEvent(Duration.ZERO)).errno(), "no event");
    }

    /**
     * {@code cm_rej_handler} in REP_RCVD: the REJ the server sends from REP_SENT ({@code cm_send_rej_locked}, which
     * puts it in time wait) reaches a client without a QP after CONNECT_RESPONSE: REJECTED, and its connection in
     * time wait, where a DREQ gets the DREP; after the time wait it is IDLE and a DREQ is dropped; no TIMEWAIT_EXIT
     * reaches the id, which is in CONNECT; once the id is destroyed, {@code cm_issue_drep} answers.
     */
    @Test
    void aRejOnceTheRepCameEntersTimewait() {
        RawCm raw = new RawCm(h);
        CmId conn = acceptedByServerForClientWithoutQp();
        CmId id = client.id;
        client.expect(CmEventType.CONNECT_RESPONSE);
        int[] rep = raw.lastIds(RawCm.REP);
        int serverId = rep[0];
        int clientId = rep[1];

        conn.reject(CmFlows.text("no"));
        assertEquals(RejectReason.CONSUMER_DEFINED, client.expect(CmEventType.REJECTED).status());
        assertTrue(raw.answersDreq(serverId, clientId, 0x77), "cm_dreq_handler in TIMEWAIT: the DREP again");
        eventually(() -> !raw.answersDreq(serverId, clientId, 0x77), TIMEWAIT_ENDS,
                "after cm_timewait_handler the IDLE connection drops a DREQ");
        noEvent(client);
        assertEquals("CONNECT", id.state());
        id.destroy();
        assertTrue(raw.answersDreq(serverId, clientId, 0x77), "cm_issue_drep: nobody knows the IDs any more");
    }

    /**
     * {@code cm_rej_handler} in ESTABLISHED: a REJ naming both IDs (whatever its reason) puts the connection in time
     * wait and is REJECTED with its reason at the id, the QP to ERR ({@code cma_modify_qp_err}), the id in CONNECT;
     * one naming another remote ID finds nothing ({@code cm_acquire_rejected_id}). {@code rdma_disconnect} then
     * sends nothing ({@code ib_send_cm_dreq} needs ESTABLISHED); the server hears nothing of it.
     */
    @Test
    void aRejWhenEstablishedEntersTimewait() {
        RawCm raw = new RawCm(h);
        established();
        int[] rep = raw.lastIds(RawCm.REP);
        int serverId = rep[0];
        int clientId = rep[1];
        int qpn = client.qp.qpNum();

        raw.rej(serverId + 1, clientId, RawCm.MSG_OTHER, RejectReason.STALE_CONN);
        raw.rej(serverId, clientId, RawCm.MSG_OTHER, RejectReason.CONSUMER_DEFINED);
        CmEvent rej = client.expect(CmEventType.REJECTED);
        assertEquals(RejectReason.CONSUMER_DEFINED, rej.status(), "the second REJ: the first named another peer");
        assertEquals(QpState.ERR, client.qp.state());
        assertEquals("CONNECT", client.id.state());
        assertTrue(raw.answersDreq(serverId, clientId, qpn), "cm_dreq_handler in TIMEWAIT");

        long dreqs = raw.countToRxe1(RawCm.DREQ);
        client.id.disconnect();
        eventually(() -> !raw.answersDreq(serverId, clientId, qpn), TIMEWAIT_ENDS, "IDLE after the time wait");
        assertEquals(dreqs, raw.countToRxe1(RawCm.DREQ), "rdma_disconnect sent no DREQ from time wait");
        noEvent(client);
        assertEquals(QpState.RTS, server.qp.state());
        noEvent(server);
    }

    /**
     * {@code cm_rej_handler} in DREQ_SENT: a REJ while the DREQ waits for its DREP (the DREQ lost on the way) cancels
     * the DREQ ({@code ib_cancel_mad}) and enters time wait; the id, still in CONNECT after {@code rdma_disconnect},
     * gets REJECTED. The DREQ, resent every 513 ms before, is not resent after the time wait ended, and no
     * DISCONNECTED follows (the DREQ's timeout no longer counts).
     */
    @Test
    void aRejWhileTheDreqWaitsCancelsItAndEntersTimewait() {
        h.core.cm().setCmResponseTimeout(8); // a DREQ waits 513 ms for its DREP
        RawCm raw = new RawCm(h);
        established();
        int[] rep = raw.lastIds(RawCm.REP);
        int serverId = rep[0];
        int clientId = rep[1];
        int qpn = client.qp.qpNum();
        raw.loseToRxe1(RawCm.DREQ);
        client.id.disconnect();
        eventually(() -> raw.countToRxe1(RawCm.DREQ) == 1, TIMEWAIT_ENDS, "the DREQ, lost");

        raw.rej(serverId, clientId, RawCm.MSG_OTHER, RejectReason.CONSUMER_DEFINED);
        assertEquals(RejectReason.CONSUMER_DEFINED, client.expect(CmEventType.REJECTED).status());
        assertTrue(raw.answersDreq(serverId, clientId, qpn), "cm_dreq_handler in TIMEWAIT");
        eventually(() -> !raw.answersDreq(serverId, clientId, qpn), TIMEWAIT_ENDS, "IDLE after the time wait");
        long dreqs = raw.countToRxe1(RawCm.DREQ);
        assertEquals(Errno.ETIMEDOUT, fails(() -> client.ch.getEvent(Duration.ofMillis(1200))).errno(),
                "no DISCONNECTED: the DREQ's timeout was cancelled");
        assertEquals(dreqs, raw.countToRxe1(RawCm.DREQ), "the DREQ is not resent after it was cancelled");
        noEvent(server);
    }

    /**
     * After a disconnect from the client and TIMEWAIT_EXIT at both ends, the client's connection is IDLE under its
     * id ({@code cm_timewait_handler}): a late DREQ is dropped ({@code cm_dreq_handler}, IDLE); once
     * {@code rdma_destroy_id} destroyed the ib_cm_id, {@code cm_issue_drep} answers it.
     */
    @Test
    void aDreqAfterTheTimeWaitIsDroppedUntilTheIdIsDestroyed() {
        RawCm raw = new RawCm(h);
        established();
        int[] rep = raw.lastIds(RawCm.REP);
        int qpn = client.qp.qpNum();
        CmFlows.disconnect(client, server);
        assertFalse(raw.answersDreq(rep[0], rep[1], qpn), "IDLE: dropped");
        client.id.destroy();
        assertTrue(raw.answersDreq(rep[0], rep[1], qpn), "no ib_cm_id of those IDs: cm_issue_drep");
    }
}
