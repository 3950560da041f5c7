package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.verbs.QpState;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.net.InetSocketAddress;
import java.time.Duration;

import static dev.dmaplane.driver.softroce.CmEnd.at;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The MRA this CM sends, as Linux 6.16+ does it: {@code cma.c}'s {@code cma_ib_req_handler} (once the listener took
 * the REQ) and {@code cma_ib_handler} (on REP_RECEIVED) call {@code ib_prepare_cm_mra}, which moves the connection
 * to MRA_REQ_SENT or MRA_REP_SENT and sends nothing; {@code cm.c}'s {@code cm_dup_req_handler} and
 * {@code cm_dup_rep_handler} answer a repeat of the REQ or REP with {@code cm_format_mra}'s MRA: the message MRAed,
 * the connection's IDs and TID, service timeout {@code CM_MRA_SETTING} (24). {@link RawCm} repeats a message from
 * rxe1 to rxe0 and reads the MRA off the wire.
 */
@Timeout(60)
class RdmaCmMraSentTest extends RdmaCmTestBase {
    /** A server on rxe0, so that {@link RawCm}, on rxe1, can repeat the client's REQ to it. */
    private static final InetSocketAddress SERVER_ON_RXE0 = at("10.0.0.4", 7471);
    private static final InetSocketAddress CLIENT_ON_RXE1 = at("10.0.0.5", 0);

    /**
     * {@code cm_dup_req_handler} in MRA_REQ_SENT: the client's REQ repeated before the server accepts gets an MRA to
     * the REQ (the server's ID, the client's ID, the REQ's TID, service timeout 24); the server then accepts from
     * MRA_REQ_SENT ({@code ib_send_cm_rep}) and both ends are ESTABLISHED.
     */
    @Test
    void aRepeatedReqBeforeAcceptGetsAnMraAndTheAcceptStillGoes() {
        RawCm raw = new RawCm(h);
        CmFlows.listen(server, SERVER_ON_RXE0, 4);
        CmFlows.resolve(client, CLIENT_ON_RXE1, SERVER_ON_RXE0);
        client.id.connect(ConnParam.of(null, 1, 1));
        CmId conn = server.expect(CmEventType.CONNECT_REQUEST).id();
        assertEquals(0, raw.count(RawCm.MRA), "ib_prepare_cm_mra sends nothing");
        int clientId = raw.lastIds(RawCm.REQ)[0];

        raw.repeat(RawCm.REQ);
        eventually(() -> raw.count(RawCm.MRA) == 1, Duration.ofSeconds(10), "cm_dup_req_handler's MRA");
        int[] mra = raw.lastMra();
        assertEquals(clientId, mra[1], "the MRA's remote comm ID: the REQ's local one");
        assertEquals(RawCm.MSG_REQ, mra[2], "message MRAed: the REQ");
        assertEquals(24, mra[3], "service timeout CM_MRA_SETTING");
        assertEquals(raw.lastTid(RawCm.REQ), raw.lastTid(RawCm.MRA), "cm_format_mra: the connection's TID");

        server.resources(conn);
        conn.accept(ConnParam.of(null, 1, 1));
        client.expect(CmEventType.ESTABLISHED);
        server.expect(CmEventType.ESTABLISHED);
        assertArrayEquals(new int[]{mra[0], clientId}, raw.lastIds(RawCm.REP), "the REP of the MRA's connection");
        assertEquals(QpState.RTS, client.qp.state());
    }

    /**
     * {@code cm_dup_rep_handler} in MRA_REP_SENT: an id without a QP got CONNECT_RESPONSE and has not sent its RTU;
     * the server's REP repeated gets an MRA to the REP (the client's ID, the server's ID, the client's TID, service
     * timeout 24); {@code rdma_establish} then sends the RTU from MRA_REP_SENT and the server is ESTABLISHED. (An id
     * with a QP sends its RTU as the REP comes, so the state is seen only without one.)
     */
    @Test
    void aRepeatedRepBeforeTheRtuGetsAnMra() {
        RawCm raw = new RawCm(h);
        acceptedByServerForClientWithoutQp();
        client.expect(CmEventType.CONNECT_RESPONSE);
        int[] rep = raw.lastIds(RawCm.REP);

        raw.repeat(RawCm.REP);
        eventually(() -> raw.count(RawCm.MRA) == 1, Duration.ofSeconds(10), "cm_dup_rep_handler's MRA");
        assertArrayEquals(new int[]{rep[1], rep[0], RawCm.MSG_REP, 24}, raw.lastMra(),
                "the client's ID, the server's, message MRAed REP, CM_MRA_SETTING");
        assertEquals(raw.lastTid(RawCm.REQ), raw.lastTid(RawCm.MRA), "the client's TID: its REQ's");

        client.id.establish();
        server.expect(CmEventType.ESTABLISHED);
        assertEquals(1, raw.count(RawCm.RTU));
    }

    /**
     * End to end: a REQ waiting 513 ms a try (CM response timeout 8) with 1 retry gives up after about 1 s; the
     * server's MRA to the retry makes the client wait 2^16 ms more, so a server that accepts after that second has
     * passed still connects. The client gets no UNREACHABLE in the 1.5 s after the MRA, then ESTABLISHED.
     */
    @Test
    void aServerSlowerThanTheReqRetriesStillConnects() {
        h.core.cm().setCmResponseTimeout(8);
        h.core.cm().setMaxCmRetries(1);
        RawCm raw = new RawCm(h);
        CmFlows.listen(server, SERVER, 4);
        CmFlows.resolve(client, CLIENT, SERVER);
        client.id.connect(ConnParam.of(null, 1, 1));
        CmId conn = server.expect(CmEventType.CONNECT_REQUEST).id();
        eventually(() -> raw.count(RawCm.MRA) == 1, Duration.ofSeconds(10), "the MRA to the REQ's retry");
        assertEquals(2, raw.countToRxe1(RawCm.REQ), "the REQ and its retry");

        assertEquals(Errno.ETIMEDOUT, fails(() -> client.ch.getEvent(Duration.ofMillis(1500))).errno(),
                "no UNREACHABLE: the MRA lengthened the retry's wait");
        server.resources(conn);
        conn.accept(ConnParam.of(null, 1, 1));
        CmEvent est = client.expect(CmEventType.ESTABLISHED);
        assertEquals(0, est.status());
        server.expect(CmEventType.ESTABLISHED);
        assertEquals(2, raw.countToRxe1(RawCm.REQ), "no REQ after the MRA");
    }
}
