package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.function.Executable;

import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * The state of an rdma_cm id over iWARP after its connection's end ({@code drivers/infiniband/core/cma.c}):
 * {@code cma_iw_handler} reports CLOSE as DISCONNECTED and a failed CONNECT_REPLY as REJECTED, UNREACHABLE or
 * CONNECT_ERROR without moving the id, and {@code rdma_reject}'s {@code iw_cm_reject} moves none either, so the id
 * stays in CONNECT (where {@code cma_ib_handler} moves an IB id to DISCONNECT on DISCONNECTED, not on REJECTED).
 * Only the later calls' errnos show it: {@code rdma_disconnect} is 0 ({@code iw_cm_disconnect} on an IDLE
 * iw_cm_id), {@code rdma_connect} EINVAL (not ROUTE_RESOLVED), {@code rdma_accept} and {@code rdma_reject} EINVAL
 * ({@code iw_cm_accept}, {@code iw_cm_reject}: not CONN_RECV), {@code rdma_resolve_addr} and {@code rdma_listen}
 * EINVAL (not IDLE or ADDR_BOUND).
 */
@Timeout(60)
class SiwRdmaCmIdStateTest {
    private final CmEnds ends = new CmEnds(77, 78, 7483);
    private final SiwRdmaCmTest.End client = ends.client;
    private final SiwRdmaCmTest.End server = ends.server;

    @AfterEach
    void close() {
        ends.close();
    }

    private static Errno errno(Executable call) {
        return assertThrows(ErrnoException.class, call).errno();
    }

    /** What every later call on {@code id}, whose connection ended, answers. */
    private void laterCallsOn(CmId id) {
        id.disconnect();
        assertEquals(List.of(Errno.EINVAL, Errno.EINVAL, Errno.EINVAL, Errno.EINVAL, Errno.EINVAL),
                List.of(errno(() -> id.connect(ConnParam.of(null, 1, 1))),
                        errno(() -> id.accept(ConnParam.of(null, 1, 1))),
                        errno(() -> id.reject(null)),
                        errno(() -> id.resolveAddr(null, new InetSocketAddress(ends.h.b.address, 1), 2000)),
                        errno(() -> id.listen(1))),
                "connect, accept, reject, resolve_addr, listen on " + id.state());
        assertEquals("CONNECT", id.state());
    }

    /** Both ends of a connection the client disconnected: DISCONNECTED, and both ids still in CONNECT. */
    @Test
    void disconnectedIdsStayInConnect() {
        ends.listen();
        ends.resolve();
        CmId conn = ends.connect();
        client.id.disconnect();
        client.expect(CmEventType.DISCONNECTED);
        server.expect(CmEventType.DISCONNECTED);
        assertEquals(List.of("CONNECT", "CONNECT"), List.of(client.id.state(), conn.state()));
        laterCallsOn(client.id);
        laterCallsOn(conn);
        CmEnds.noEvent(client);
        CmEnds.noEvent(server);
    }

    /**
     * A rejected request: the server's id stays in CONNECT after {@code rdma_reject}, the client's after REJECTED
     * ({@code -ECONNRESET}).
     */
    @Test
    void rejectedIdsStayInConnect() {
        ends.listen();
        ends.resolve();
        client.id.connect(ConnParam.of(null, 1, 1));
        CmId conn = server.expect(CmEventType.CONNECT_REQUEST).id();
        conn.reject(null);
        CmEvent rej = client.expect(CmEventType.REJECTED);
        assertEquals(-Errno.ECONNRESET.number(), rej.status());
        assertEquals(List.of("CONNECT", "CONNECT"), List.of(client.id.state(), conn.state()));
        laterCallsOn(client.id);
        laterCallsOn(conn);
    }

    /** A connect the server's siw never answers (MPA reply timeout 300 ms): UNREACHABLE, the id still in CONNECT. */
    @Test
    void anUnreachableIdStaysInConnect() {
        ends.h.da.providers.get("siw0").mpaTimeouts(MpaTimers.MPAREP_TIMEOUT, Duration.ofMillis(300));
        ends.listen();
        ends.resolve();
        client.id.connect(ConnParam.of(null, 1, 1));
        server.expect(CmEventType.CONNECT_REQUEST);
        assertEquals(-Errno.ETIMEDOUT.number(), client.expect(CmEventType.UNREACHABLE).status());
        laterCallsOn(client.id);
    }
}
