package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.DataInputStream;
import java.net.Socket;
import java.nio.ByteBuffer;

import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * {@code rdma_accept} on iWARP when the accept fails, as {@code drivers/infiniband/core/cma.c} handles it: its
 * {@code reject:} path moves the QP to ERR ({@code cma_modify_qp_err}), calls
 * {@code rdma_reject(id, NULL, 0, IB_CM_REJ_CONSUMER_DEFINED)} and returns the error; the rdma_cm id stays in
 * CONNECT. Under it, {@code iwcm.c}'s {@code iw_cm_accept} leaves the request pending when it finds no such QP
 * (then {@code iw_cm_reject} reaches {@code siw_reject}, which sends the MPA reject), while a refusal inside
 * {@code siw_accept} ({@code siw_cm.c}) releases the socket and leaves the iw_cm_id IDLE, so that the reject is
 * EINVAL and sends nothing: the initiator sees its stream end.
 */
@Timeout(60)
class SiwRdmaCmAcceptErrorTest {
    private final CmEnds ends = new CmEnds(65, 66, 7475);
    private final SiwRdmaCmTest.End client = ends.client;
    private final SiwRdmaCmTest.End server = ends.server;

    @AfterEach
    void close() {
        ends.close();
    }

    /**
     * {@code siw_accept} refuses a QP past RTR through its error path, the path each of its refusals after the QP
     * lookup takes (depths above the device's and private data beyond the reply's room too, which librdmacm's
     * {@code ucma_valid_param} and the {@code u8 private_data_len} keep from reaching it through the rdma_cm): the
     * server's QP went to ERR before the accept (siw takes the RTR of {@code cma_modify_qp_rtr} in ERR and ignores
     * it, ERR being final). {@code rdma_accept} returns EINVAL with the server's QP in ERR
     * ({@code cma_modify_qp_err}); the client's siw sees the stream end while it awaits the reply
     * (CONNECT_REPLY {@code -ECONNRESET}), which {@code cma_iw_handler} makes REJECTED with status
     * {@code -ECONNRESET}, its QP in ERR. The request is answered: a second accept and a reject are EINVAL.
     */
    @Test
    void aDriverRefusalMovesTheQpToErrAndTheClientIsRejected() {
        CmId l = ends.listen();
        ends.resolve();
        client.id.connect(ConnParam.of(null, 4, 8));
        CmId conn = server.expect(CmEventType.CONNECT_REQUEST).id();
        server.resources(conn);

        server.qp.modify(QpAttr.builder().state(QpState.ERR).build());
        ErrnoException e = assertThrows(ErrnoException.class, () -> conn.accept(ConnParam.of(null, 1, 1)));
        assertEquals(Errno.EINVAL, e.errno());
        assertEquals(QpState.ERR, server.qp.state(), "cma_modify_qp_err");
        assertEquals("CONNECT", conn.state(), "rdma_accept leaves the id's state alone");
        CmEvent rej = client.expect(CmEventType.REJECTED);
        assertEquals(-Errno.ECONNRESET.number(), rej.status());
        assertEquals(QpState.ERR, client.qp.state());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> conn.accept(ConnParam.of(null, 1, 1))).errno(), "answered already");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> conn.reject(null)).errno());
        CmEnds.noEvent(server);
        CmEnds.noEvent(client);
        l.destroy();
    }

    /**
     * An accept naming a QP that does not exist ({@code conn_param->qp_num} of an id without a QP):
     * {@code iw_cm_accept}'s {@code get_qp} fails with EINVAL before {@code siw_accept} runs, the request stays
     * pending, and {@code rdma_accept}'s {@code rdma_reject} reaches {@code siw_reject}: the MPA v2 reply with the
     * reject bit, no private data, and the words {@code siw_proc_mpareq} prepared from the request (the server's IRD
     * 7 and ORD 5 from the client's ORD and IRD, the peer-to-peer bit echoed, the zero-length WRITE picked as RTR),
     * then the stream's end. The raw client speaks MPA v2 by hand (RFC 6581).
     */
    @Test
    void anAcceptWithNoSuchQpRejectsTheRequestOnTheWire() throws Exception {
        CmId l = ends.listen();
        try (Socket s = new Socket()) {
            s.connect(l.localAddr(), 10_000);
            s.setSoTimeout(10_000);
            ByteBuffer req = ByteBuffer.allocate(Mpa.RR_HDR + 5);
            req.put(Mpa.REQ_KEY).put((byte) 0x50).put((byte) 2).putShort((short) 5); // C and H, revision 2
            req.putShort((short) (0x8000 | 5)).putShort((short) (0xc000 | 7)).put((byte) 'x'); // P2P, WRITE|READ RTR
            s.getOutputStream().write(req.array());
            CmEvent r = server.expect(CmEventType.CONNECT_REQUEST);
            CmId conn = r.id();

            ErrnoException e = assertThrows(ErrnoException.class,
                    () -> conn.accept(new ConnParam(null, 1, 1, 0, 7, 7, false, 0xabcdef)));
            assertEquals(Errno.EINVAL, e.errno());
            assertEquals("CONNECT", conn.state());

            ByteBuffer want = ByteBuffer.allocate(Mpa.RR_HDR + 4);
            want.put(Mpa.REP_KEY).put((byte) 0x70).put((byte) 2).putShort((short) 4); // C, R and H
            want.putShort((short) (0x8000 | 7)).putShort((short) (0x8000 | 5));
            DataInputStream in = new DataInputStream(s.getInputStream());
            byte[] got = new byte[want.capacity()];
            in.readFully(got);
            assertArrayEquals(want.array(), got, "siw_reject's reply");
            assertEquals(-1, in.read(), "then the stream ends");
            assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> conn.reject(null)).errno(),
                    "answered already");
        }
        CmEnds.noEvent(server);
        l.destroy();
    }

    /**
     * {@code rdma_accept} of a request whose initiator closed its stream while it waited: {@code siw_accept} finds
     * the endpoint out of state and returns ECONNRESET ({@code siw_cm.c}), which {@code iw_cm_accept} and
     * {@code cma_accept_iw} pass on; {@code rdma_accept}'s {@code reject:} path moves the QP to ERR
     * ({@code cma_modify_qp_err}) and its {@code iw_cm_reject} is EINVAL (the failed accept left the iw_cm_id IDLE),
     * so {@code rdma_accept} returns ECONNRESET, the id stays in CONNECT, and a second accept or a reject is EINVAL.
     */
    @Test
    void anAcceptOfARequestWhosePeerWentAwayIsEconnreset() throws Exception {
        CmId l = ends.listen();
        CmId conn;
        try (Socket s = new Socket()) {
            s.connect(l.localAddr(), 10_000);
            s.getOutputStream().write(Mpa.frame(false, false, Mpa.REVISION_2, new Mpa.V2(4, 4, false, 0),
                    new byte[]{'x'}));
            conn = server.expect(CmEventType.CONNECT_REQUEST).id();
        }
        eventually(() -> Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.isAlive()
                && t.getName().startsWith("siw-rx-") && t.getName().contains("-p")), SiwHosts.WAIT,
                "the endpoint saw its peer close");
        server.resources(conn);
        ErrnoException e = assertThrows(ErrnoException.class, () -> conn.accept(ConnParam.of(null, 1, 1)));
        assertEquals(Errno.ECONNRESET, e.errno(), e.getMessage());
        assertEquals(QpState.ERR, server.qp.state(), "cma_modify_qp_err");
        assertEquals("CONNECT", conn.state(), "rdma_accept leaves the id's state alone");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> conn.accept(ConnParam.of(null, 1, 1))).errno(), "answered already");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> conn.reject(null)).errno());
        CmEnds.noEvent(server);
        l.destroy();
    }
}
