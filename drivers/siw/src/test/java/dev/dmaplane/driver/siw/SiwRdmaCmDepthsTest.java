package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.verbs.QpState;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The READ depths an rdma_cm application on iWARP gives and gets: librdmacm's checks of its
 * {@code rdma_conn_param} ({@code librdmacm/cma.c}: {@code ucma_valid_param}, and {@code RDMA_MAX_RESP_RES} /
 * {@code RDMA_MAX_INIT_DEPTH} in {@code rdma_connect} and {@code rdma_accept}), and the depths the events carry
 * ({@code siw_cm_upcall} in {@code drivers/infiniband/sw/siw/siw_cm.c}, {@code iw_conn_req_handler} and
 * {@code cma_iw_handler} in {@code drivers/infiniband/core/cma.c}).
 */
@Timeout(60)
class SiwRdmaCmDepthsTest {
    private final CmEnds ends = new CmEnds(61, 62, 7473);
    private final SiwHosts h = ends.h;
    private final SiwRdmaCmTest.End client = ends.client;
    private final SiwRdmaCmTest.End server = ends.server;

    @AfterEach
    void close() {
        ends.close();
    }

    private static List<Integer> depths(CmEvent e) {
        return List.of(e.param().responderResources(), e.param().initiatorDepth());
    }

    /**
     * MPA revision 1 carries no IRD/ORD: CONNECT_REQUEST has the zeroed {@code cep->ord} and {@code cep->ird} of
     * {@code siw_proc_mpareq}, while each ESTABLISHED carries the side's own depths, which {@code siw_connect} and
     * {@code siw_accept} set from the caller's and {@code siw_cm_upcall} signals ({@code event.ord = cep->ord},
     * {@code event.ird = cep->ird}), {@code cma_iw_handler} making the ORD responder resources and the IRD initiator
     * depth.
     */
    @Test
    void underMpaRevision1EachEstablishedCarriesTheSidesOwnDepths() {
        h.da.providers.get("siw0").mpa(Mpa.REVISION_1, false);
        h.db.providers.get("siw0").mpa(Mpa.REVISION_1, false);
        CmId l = ends.listen();
        ends.resolve();
        client.id.connect(ConnParam.of(null, 4, 8)); // ORD 8, IRD 4
        CmEvent req = server.expect(CmEventType.CONNECT_REQUEST);
        assertEquals(List.of(0, 0), depths(req), "the request carried none");
        server.resources(req.id());
        req.id().accept(ConnParam.of(null, 16, 2)); // ORD 2, IRD 16
        assertEquals(List.of(8, 4), depths(client.expect(CmEventType.ESTABLISHED)), "the client's ORD and IRD");
        assertEquals(List.of(2, 16), depths(server.expect(CmEventType.ESTABLISHED)), "the server's ORD and IRD");
        l.destroy();
    }

    /**
     * {@code ucma_valid_param}: responder resources above {@code max_qp_rd_atom} or an initiator depth above
     * {@code max_qp_init_rd_atom} (siw's 128) is EINVAL before anything reaches the kernel: the id stays
     * ROUTE_RESOLVED, its QP in INIT, no TCP connection is made (the listener hears of nobody) and no event comes.
     * Neither the rdma_cm nor the iw_cm caps the depths; 255, {@code RDMA_MAX_RESP_RES} and
     * {@code RDMA_MAX_INIT_DEPTH}, is the device's maximum, which siw accepts.
     */
    @Test
    void connectDepthsAboveTheDevicesAreEinvalBeforeAnythingMoves() {
        CmId l = ends.listen();
        ends.resolve();
        ErrnoException rr = assertThrows(ErrnoException.class, () -> client.id.connect(ConnParam.of(null, 129, 1)));
        assertEquals(Errno.EINVAL, rr.errno());
        assertTrue(rr.getMessage().contains("129"), rr.getMessage());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> client.id.connect(ConnParam.of(null, 1, 200))).errno(), "initiator depth 200");
        assertEquals("ROUTE_RESOLVED", client.id.state());
        assertEquals(QpState.INIT, client.qp.state(), "not even moved to RTR");
        assertEquals(Errno.ETIMEDOUT, assertThrows(ErrnoException.class,
                () -> client.ch.getEvent(Duration.ofMillis(50))).errno(), "no event");

        client.id.connect(ConnParam.of(null, 255, 255));
        CmEvent req = server.expect(CmEventType.CONNECT_REQUEST);
        assertEquals(List.of(128, 128), depths(req), "the first request the listener heard of: the device's 128");
        req.id().reject(null);
        client.expect(CmEventType.REJECTED);
        l.destroy();
    }

    /**
     * {@code rdma_accept} runs {@code ucma_valid_param} first: depths above the device's are EINVAL and nothing
     * happened, so the request is still there to answer; 255 then takes what the request asked
     * ({@code min(id_priv->initiator_depth, max_initiator_depth)}, likewise the responder resources).
     */
    @Test
    void acceptDepthsAboveTheDevicesAreEinvalAndTheRequestStaysToAnswer() {
        CmId l = ends.listen();
        ends.resolve();
        client.id.connect(ConnParam.of(null, 4, 8)); // ORD 8, IRD 4
        CmEvent req = server.expect(CmEventType.CONNECT_REQUEST);
        CmId conn = req.id();
        server.resources(conn);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> conn.accept(ConnParam.of(null, 1, 129))).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> conn.accept(ConnParam.of(null, 200, 1))).errno());
        assertEquals(QpState.INIT, server.qp.state(), "nothing moved");

        conn.accept(ConnParam.of(null, 255, 255)); // the request's: ORD 4 (its IRD), IRD 8 (its ORD)
        assertEquals(List.of(4, 8), depths(server.expect(CmEventType.ESTABLISHED)), "the server's ORD 4 and IRD 8");
        assertEquals(List.of(8, 4), depths(client.expect(CmEventType.ESTABLISHED)), "the client's ORD 8 and IRD 4");
        l.destroy();
    }
}
