package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.PortSpace;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.net.InetSocketAddress;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The READ depths an rdma_cm application on iWARP gets: the depths the events carry ({@code siw_cm_upcall} in
 * {@code drivers/infiniband/sw/siw/siw_cm.c}, {@code iw_conn_req_handler} and {@code cma_iw_handler} in
 * {@code drivers/infiniband/core/cma.c}).
 */
@Timeout(60)
class SiwRdmaCmDepthsTest {
    private static final int PORT = 7473;
    private final SiwHosts h = new SiwHosts(61, 62);
    private final SiwRdmaCmTest.End client = new SiwRdmaCmTest.End(h.ma, h.ca, "client");
    private final SiwRdmaCmTest.End server = new SiwRdmaCmTest.End(h.mb, h.cb, "server");

    @AfterEach
    void close() {
        client.close();
        server.close();
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    private CmId listen() {
        CmId l = server.ch.createId(PortSpace.TCP);
        l.bindAddr(new InetSocketAddress(h.b.address, PORT));
        l.listen(4);
        return l;
    }

    private void resolve() {
        CmId id = client.ch.createId(PortSpace.TCP);
        id.resolveAddr(null, new InetSocketAddress(h.b.address, PORT), 2000);
        client.expect(CmEventType.ADDR_RESOLVED);
        id.resolveRoute(2000);
        client.expect(CmEventType.ROUTE_RESOLVED);
        client.resources(id);
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
        CmId l = listen();
        resolve();
        client.id.connect(ConnParam.of(null, 4, 8)); // ORD 8, IRD 4
        CmEvent req = server.expect(CmEventType.CONNECT_REQUEST);
        assertEquals(List.of(0, 0), depths(req), "the request carried none");
        server.resources(req.id());
        req.id().accept(ConnParam.of(null, 16, 2)); // ORD 2, IRD 16
        assertEquals(List.of(8, 4), depths(client.expect(CmEventType.ESTABLISHED)), "the client's ORD and IRD");
        assertEquals(List.of(2, 16), depths(server.expect(CmEventType.ESTABLISHED)), "the server's ORD and IRD");
        l.destroy();
    }
}
