package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.verbs.QpState;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;

import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A DREQ received as {@code drivers/infiniband/core/cm.c}'s {@code cm_dreq_handler} takes it, seen through the
 * rdma_cm over Soft-RoCE with a raw CM end ({@link RawCm}) that sends DREQs and records the CM messages on the wire:
 * one whose remote QPN is not the connection's local QPN is dropped; one that meets the connection's own DREQ (both
 * ends disconnect at once) cancels that DREQ and moves the connection to DREQ_RCVD, and the DREP is left to the
 * consumer ({@code cma_ib_handler} reports DISCONNECTED and sends nothing; {@code rdma_disconnect}'s
 * {@code ib_send_cm_drep} answers).
 */
@Timeout(60)
class RdmaCmDreqTest extends RdmaCmTestBase {
    private void noEvent(CmEnd end) {
        assertEquals(Errno.ETIMEDOUT, fails(() -> end.ch.getEvent(Duration.ZERO)).errno(), "no event");
    }

    /**
     * {@code cm_dreq_handler}'s check of {@code CM_DREQ_REMOTE_QPN_EECN} against {@code cm_id_priv->local_qpn}: a DREQ
     * with both IDs right but another QPN is dropped (no DISCONNECTED, no DREP); the same DREQ naming the client's QP
     * is DISCONNECTED.
     */
    @Test
    void aDreqForAnotherQpIsDropped() {
        RawCm raw = new RawCm(h);
        established();
        int[] rep = raw.lastIds(RawCm.REP);
        int qpn = client.qp.qpNum();

        assertFalse(raw.answersDreq(rep[0], rep[1], qpn + 1), "no DREP");
        noEvent(client);
        assertEquals("CONNECT", client.id.state());
        assertFalse(raw.answersDreq(rep[0], rep[1], qpn), "DREQ_RCVD: the DREP is the consumer's");
        client.expect(CmEventType.DISCONNECTED);
        assertEquals(QpState.RTS, server.qp.state());
        noEvent(server);
    }

    /**
     * Both ends disconnect at once: the client's DREQ is lost on the way, the server's reaches the client in
     * DREQ_SENT. {@code cm_dreq_handler} cancels the client's DREQ ({@code ib_cancel_mad}: not resent), moves the
     * connection to DREQ_RCVD and reports DREQ_RECEIVED, DISCONNECTED at the client's id; no DREP goes until the
     * client's {@code rdma_disconnect} ({@code ib_send_cm_dreq} refused in DREQ_RCVD, then {@code ib_send_cm_drep}),
     * which the server, in DREQ_SENT, takes: DISCONNECTED there too, then TIMEWAIT_EXIT at both ends.
     */
    @Test
    void bothEndsDisconnectAtOnceAndTheDrepIsTheConsumers() {
        h.core.cm().setCmResponseTimeout(8); // a DREQ waits 513 ms for its DREP
        RawCm raw = new RawCm(h);
        established();
        int[] rep = raw.lastIds(RawCm.REP);
        raw.loseToRxe1(RawCm.DREQ);
        client.id.disconnect();
        eventually(() -> raw.countToRxe1(RawCm.DREQ) == 1, CmEnd.WAIT, "the client's DREQ, lost");

        server.id.disconnect();
        client.expect(CmEventType.DISCONNECTED);
        assertFalse(raw.answersDreq(rep[0], rep[1], client.qp.qpNum()),
                "DREQ_RCVD drops a repeated DREQ (not in time wait)");
        assertFalse(raw.drepSeen(rep[1], rep[0]), "no DREP before the consumer's");
        noEvent(server);

        client.id.disconnect();
        server.expect(CmEventType.DISCONNECTED);
        client.expect(CmEventType.TIMEWAIT_EXIT);
        server.expect(CmEventType.TIMEWAIT_EXIT);
        assertTrue(raw.drepSeen(rep[1], rep[0]), "rdma_disconnect's DREP");
        assertEquals(1, raw.countToRxe1(RawCm.DREQ), "the client's DREQ was cancelled, never resent");
    }
}
