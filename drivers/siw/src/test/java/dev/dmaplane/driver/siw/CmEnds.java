package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.PortSpace;

import java.net.InetSocketAddress;
import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * What the rdma_cm tests over siw share: two siw hosts ({@link SiwHosts}), an rdma_cm end on each
 * ({@link SiwRdmaCmTest.End}: the client on host a, the server on host b) and the port the server listens at.
 * Closing closes both ends and the hosts and checks that no siw thread is left.
 */
final class CmEnds implements AutoCloseable {
    final SiwHosts h;
    final SiwRdmaCmTest.End client;
    final SiwRdmaCmTest.End server;
    private final int port;

    /** Hosts {@code a} and {@code b} ({@link SiwHosts#SiwHosts(int, int)}), the server listening at {@code port}. */
    CmEnds(int a, int b, int port) {
        h = new SiwHosts(a, b);
        client = new SiwRdmaCmTest.End(h.ma, h.ca, "client");
        server = new SiwRdmaCmTest.End(h.mb, h.cb, "server");
        this.port = port;
    }

    /** A server id listening on its siw address at the port ({@code rdma_bind_addr}, {@code rdma_listen}). */
    CmId listen() {
        CmId l = server.ch.createId(PortSpace.TCP);
        l.bindAddr(new InetSocketAddress(h.b.address, port));
        l.listen(4);
        return l;
    }

    /** A client id at ROUTE_RESOLVED towards the server's port, with the client's resources and QP made on it. */
    CmId resolve() {
        CmId id = client.ch.createId(PortSpace.TCP);
        id.resolveAddr(null, new InetSocketAddress(h.b.address, port), 2000);
        client.expect(CmEventType.ADDR_RESOLVED);
        id.resolveRoute(2000);
        client.expect(CmEventType.ROUTE_RESOLVED);
        client.resources(id);
        return id;
    }

    /**
     * The client's resolved id ({@link #resolve}) connected to a listening server ({@link #listen}) with 4 and 8 READs
     * each way ({@code rdma_connect}, {@code rdma_accept} with the server's resources made on the request's id), both
     * ends ESTABLISHED; returns the server's id of the connection.
     */
    CmId connect() {
        client.id.connect(ConnParam.of(null, 4, 8));
        CmId conn = server.expect(CmEventType.CONNECT_REQUEST).id();
        server.resources(conn);
        conn.accept(ConnParam.of(null, 4, 8));
        client.expect(CmEventType.ESTABLISHED);
        server.expect(CmEventType.ESTABLISHED);
        return conn;
    }

    /** Nothing arrives on {@code end}'s channel within 100 ms. */
    static void noEvent(SiwRdmaCmTest.End end) {
        assertEquals(Errno.ETIMEDOUT, assertThrows(ErrnoException.class,
                () -> end.ch.getEvent(Duration.ofMillis(100))).errno(), "no event");
    }

    @Override
    public void close() {
        client.close();
        server.close();
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }
}
