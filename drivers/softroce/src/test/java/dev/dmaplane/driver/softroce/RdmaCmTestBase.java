package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.PortSpace;
import org.junit.jupiter.api.AfterEach;

import java.net.InetSocketAddress;

import static dev.dmaplane.driver.softroce.CmEnd.at;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * The fixture of the rdma_cm tests over Soft-RoCE's in-process fabric ({@link Hcas}): a client process on rxe0
 * (10.0.0.4) and a server process on rxe1 (10.0.0.5), each a {@link CmEnd}, closed after each test, which must
 * leave no rxe, MAD ({@code ib_mad-*}) or CM ({@code ib_cm}) thread behind; and the first steps of a connection
 * the tests share.
 */
abstract class RdmaCmTestBase {
    /** The server's listening address, on rxe1. */
    static final InetSocketAddress SERVER = at("10.0.0.5", 7471);
    /** rxe0's address: a connection to a local address would otherwise stay on the device that has it. */
    static final InetSocketAddress CLIENT = at("10.0.0.4", 0);
    final Hcas h = new Hcas();
    final CmEnd client = new CmEnd(h.machine, h.core, "client");
    final CmEnd server = new CmEnd(h.machine, h.core, "server");

    @AfterEach
    void closeEnds() {
        client.close();
        server.close();
        h.close();
        assertEquals(0, Hcas.softroceThreads());
        assertEquals(0, Thread.getAllStackTraces().keySet().stream()
                .filter(t -> (t.getName().startsWith("ib_mad-") || t.getName().equals("ib_cm")) && t.isAlive())
                .count(), "no MAD or CM thread left");
    }

    static ErrnoException fails(Runnable call) {
        return assertThrows(ErrnoException.class, call::run);
    }

    /**
     * A listener on {@link #SERVER} and the client's REQ to it from {@link #CLIENT} with {@code p}, its QP in INIT:
     * the server's new id, taken from CONNECT_REQUEST (in MRA_REQ_SENT, no resources yet).
     */
    CmId request(ConnParam p) {
        CmFlows.listen(server, SERVER, 4);
        CmFlows.resolve(client, CLIENT, SERVER);
        client.id.connect(p);
        return server.expect(CmEventType.CONNECT_REQUEST).id();
    }

    /**
     * A listener on {@link #SERVER}, the client's id with no QP connecting from {@link #CLIENT}, and the server's
     * accept with its resources: the server's id (REP_SENT, its QP in RTS); the client's CONNECT_RESPONSE (REP_RCVD)
     * is the caller's to take.
     */
    CmId acceptedByServerForClientWithoutQp() {
        CmFlows.listen(server, SERVER, 4);
        CmId id = client.ch.createId(PortSpace.TCP);
        client.id = id;
        id.resolveAddr(CLIENT, SERVER, 2000);
        client.expect(CmEventType.ADDR_RESOLVED);
        id.resolveRoute(2000);
        client.expect(CmEventType.ROUTE_RESOLVED);
        id.connect(new ConnParam(null, 1, 1, 1, 7, 7, false, 0x77));
        CmId conn = server.expect(CmEventType.CONNECT_REQUEST).id();
        server.resources(conn);
        conn.accept(ConnParam.of(null, 1, 1));
        return conn;
    }

    /** A listener on {@link #SERVER} and the client connected to it ({@link CmFlows#connect}): the server's id. */
    CmId established() {
        CmId l = CmFlows.listen(server, SERVER, 4);
        return CmFlows.connect(client, server, l, CLIENT, SERVER);
    }
}
