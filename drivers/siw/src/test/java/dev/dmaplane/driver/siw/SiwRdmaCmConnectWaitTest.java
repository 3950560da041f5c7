package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.PortSpace;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.testing.Blocked;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.net.InetSocketAddress;
import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

/**
 * The iw_cm's wait for a connect's outcome ({@code drivers/infiniband/core/iwcm.c}): {@code iw_cm_connect} sets
 * {@code IWCM_F_CONNECT_WAIT} and {@code cm_conn_rep_handler} clears it when the driver's CONNECT_REPLY came;
 * {@code iw_cm_disconnect} and {@code destroy_cm_id} wait on {@code connect_wait} until then, and act on the state
 * the outcome left: ESTABLISHED is closed gracefully ({@code iwcm_modify_qp_sqd}) or abruptly
 * ({@code iwcm_modify_qp_err}), IDLE (the connect failed) is left alone. siw's MPA timer bounds the wait
 * ({@code siw_cm.c}'s {@code MPAREQ_TIMEOUT}: CONNECT_REPLY {@code -ETIMEDOUT}, which {@code cma_iw_handler} reports as
 * UNREACHABLE). Between two siw machines through the rdma_cm.
 */
@Timeout(60)
class SiwRdmaCmConnectWaitTest {
    private static final String WAIT_FRAME = "dev.dmaplane.rdma.cm.impl.IwId.awaitConnectOutcome";

    private static final int PORT = 7481;

    private final CmEnds ends = new CmEnds(75, 76, PORT);
    private final SiwRdmaCmTest.End client = ends.client;
    private final SiwRdmaCmTest.End server = ends.server;

    @AfterEach
    void close() {
        ends.close();
    }

    /** The client's siw waits {@code d} for an MPA reply. */
    private void replyTimeout(Duration d) {
        ends.h.da.providers.get("siw0").mpaTimeouts(MpaTimers.MPAREP_TIMEOUT, d);
    }

    private static QpState state(SiwRdmaCmTest.End end) {
        return end.qp.query().qpState();
    }

    /**
     * A server that never answers the CONNECT_REQUEST: siw's {@code MPAREQ_TIMEOUT} (here 300 ms) reports
     * CONNECT_REPLY {@code -ETIMEDOUT}, which {@code cma_iw_handler} makes UNREACHABLE with that status; the client's
     * QP is in ERR (siw's release, {@code siw_qp_llp_close}).
     */
    @Test
    void aServerThatNeverAnswersIsUnreachable() {
        replyTimeout(Duration.ofMillis(300));
        ends.listen();
        ends.resolve();
        client.id.connect(ConnParam.of(null, 4, 8));
        server.expect(CmEventType.CONNECT_REQUEST);
        CmEvent e = client.expect(CmEventType.UNREACHABLE);
        assertEquals(-Errno.ETIMEDOUT.number(), e.status());
        assertEquals(QpState.ERR, state(client));
        CmEnds.noEvent(client);
    }

    /**
     * {@code iw_cm_disconnect} during a connect blocks on {@code IWCM_F_CONNECT_WAIT}; once the server accepted,
     * the iw_cm_id is ESTABLISHED and the disconnect moves the QP to SQD ({@code iwcm_modify_qp_sqd}: siw's CLOSING)
     * before it returns. The client sees ESTABLISHED, then DISCONNECTED; the server ESTABLISHED and DISCONNECTED.
     */
    @Test
    void aDisconnectDuringAConnectWaitsForItsOutcome() throws Exception {
        ends.listen();
        ends.resolve();
        client.id.connect(ConnParam.of(null, 4, 8));
        CmId conn = server.expect(CmEventType.CONNECT_REQUEST).id();
        Blocked.Call<Void> disconnect = Blocked.run("rdma_disconnect", client.id::disconnect);
        disconnect.awaitBlockedIn(WAIT_FRAME, "dev.dmaplane.rdma.cm.impl.IwId.disconnect");
        assertFalse(disconnect.isDone(), "iw_cm_disconnect waits for the CONNECT_REPLY");

        server.resources(conn);
        conn.accept(ConnParam.of(null, 4, 8));
        disconnect.get();
        assertEquals(QpState.SQD, state(client), "iwcm_modify_qp_sqd once ESTABLISHED");
        client.expect(CmEventType.ESTABLISHED);
        client.expect(CmEventType.DISCONNECTED);
        server.expect(CmEventType.ESTABLISHED);
        server.expect(CmEventType.DISCONNECTED);
        assertEquals(QpState.ERR, state(server));
    }

    /**
     * {@code rdma_destroy_id} during a connect: {@code destroy_cm_id} blocks on {@code IWCM_F_CONNECT_WAIT}; once the
     * server accepted, it finds the iw_cm_id ESTABLISHED and closes the connection abruptly
     * ({@code iwcm_modify_qp_err}): the client's QP in ERR, no event at the destroyed id, the server DISCONNECTED.
     */
    @Test
    void aDestroyDuringAConnectWaitsAndThenClosesAbruptly() throws Exception {
        ends.listen();
        ends.resolve();
        client.id.connect(ConnParam.of(null, 4, 8));
        CmId conn = server.expect(CmEventType.CONNECT_REQUEST).id();
        Blocked.Call<Void> destroy = Blocked.run("rdma_destroy_id", client.id::destroy);
        destroy.awaitBlockedIn(WAIT_FRAME, "dev.dmaplane.rdma.cm.impl.IwId.destroy");
        assertFalse(destroy.isDone(), "destroy_cm_id waits for the CONNECT_REPLY");

        server.resources(conn);
        conn.accept(ConnParam.of(null, 4, 8));
        destroy.get();
        assertEquals(QpState.ERR, state(client), "iwcm_modify_qp_err once ESTABLISHED");
        server.expect(CmEventType.ESTABLISHED);
        server.expect(CmEventType.DISCONNECTED);
        CmEnds.noEvent(client);
    }

    /**
     * A destroy waiting for a connect's outcome when the client's RDMA core closes: the rdma_cm drops every event
     * from then on, so the wait ends with the close rather than wait for an outcome that cannot come. The client's QP
     * is on a context of its own, which the event channel's close does not take down (its end would otherwise bring
     * a CONNECT_REPLY while the rdma_cm still delivers events).
     */
    @Test
    void aClosingRdmaCmEndsTheWait() throws Exception {
        ends.listen();
        CmId id = client.ch.createId(PortSpace.TCP);
        id.resolveAddr(null, new InetSocketAddress(ends.h.b.address, PORT), 2000);
        client.expect(CmEventType.ADDR_RESOLVED);
        id.resolveRoute(2000);
        client.expect(CmEventType.ROUTE_RESOLVED);
        VerbsContext own = ends.h.ca.device("siw0").orElseThrow().open(client.mm);
        CompletionQueue cq = own.createCq(16, null, 0);
        id.createQp(own.allocPd(), new QpInitAttr(cq, cq, null, new QpCap(4, 4, 1, 1, 0), QpType.RC, false));
        id.connect(ConnParam.of(null, 4, 8));
        server.expect(CmEventType.CONNECT_REQUEST);
        Blocked.Call<Void> destroy = Blocked.run("rdma_destroy_id", id::destroy);
        destroy.awaitBlockedIn(WAIT_FRAME, "dev.dmaplane.rdma.cm.impl.IwId.destroy");
        assertFalse(destroy.isDone(), "destroy_cm_id waits for the CONNECT_REPLY");
        ends.h.ca.close();
        destroy.get();
    }

    /**
     * {@code rdma_destroy_id} during a connect the server never answers: the wait ends with siw's
     * {@code MPAREQ_TIMEOUT} (here 300 ms), whose release moved the client's QP to ERR before its CONNECT_REPLY
     * {@code -ETIMEDOUT} cleared the wait: the QP is in ERR when the destroy returns (a destroy that did not wait
     * would have found it IDLE and left it so). The iw_cm_id is IDLE then ({@code cm_conn_rep_handler}), so
     * {@code destroy_cm_id} has nothing to close, and the destroyed id gets no event.
     */
    @Test
    void aDestroyDuringAConnectToASilentServerEndsWithTheMpaTimeout() {
        replyTimeout(Duration.ofMillis(300));
        ends.listen();
        ends.resolve();
        client.id.connect(ConnParam.of(null, 4, 8));
        server.expect(CmEventType.CONNECT_REQUEST);
        client.id.destroy();
        assertEquals(QpState.ERR, state(client), "the MPA timeout's release came before the destroy returned");
        CmEnds.noEvent(client);
    }
}
