package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.ConnParam;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;

import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A received MRA as {@code drivers/infiniband/core/cm.c}'s {@code cm_mra_handler} takes it: the peer's MRA to a REQ
 * still waiting gives the REQ its service timeout plus the path's ack timeout to wait ({@code ib_modify_mad}), for
 * the try then running and each retry, and {@code cma_ib_handler} ignores the event. Here the REQs are lost on the
 * way to rxe1 and a raw CM end ({@link RawCm}) sends the MRA a slow server would send.
 */
@Timeout(60)
class RdmaCmMraTest extends RdmaCmTestBase {
    /**
     * A REQ with the CM response timeout 8 waits 513 ms a try (2 packet lifetimes and the response timeout), and 2
     * retries end in UNREACHABLE after about 1.5 s. After an MRA with service timeout 18 (1024 ms) each try waits
     * 1024 + 512 ms (the ack timeout 17 of the path): UNREACHABLE not before 3 such waits, still after 3 REQs. An
     * MRA naming the REP while the REQ waits changes nothing.
     */
    @Test
    void anMraToTheReqLengthensEachOfItsWaits() {
        h.core.cm().setCmResponseTimeout(8);
        h.core.cm().setMaxCmRetries(2);
        RawCm raw = new RawCm(h);
        raw.loseToRxe1(RawCm.REQ);
        CmFlows.listen(server, SERVER, 4);
        CmFlows.resolve(client, CLIENT, SERVER);
        client.id.connect(ConnParam.of(null, 1, 1));
        eventually(() -> raw.countToRxe1(RawCm.REQ) == 1, Duration.ofSeconds(10), "the REQ, lost");
        int clientId = raw.lastIds(RawCm.REQ)[0];

        raw.mra(0x4D52, clientId, RawCm.MSG_REP, 18);
        long t0 = System.nanoTime();
        raw.mra(0x4D52, clientId, RawCm.MSG_REQ, 18);
        CmEvent e = client.expect(CmEventType.UNREACHABLE);
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertEquals(-Errno.ETIMEDOUT.number(), e.status());
        assertTrue(ms >= 3 * 1536 - 100, "three waits of 1536 ms after the MRA, not of 513: " + ms + " ms");
        assertEquals(3, raw.countToRxe1(RawCm.REQ), "the REQ and its 2 retries");
        assertEquals("CONNECT", client.id.state());
    }
}
