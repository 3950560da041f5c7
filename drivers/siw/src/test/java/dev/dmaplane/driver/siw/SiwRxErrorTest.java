package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketException;
import java.nio.ByteBuffer;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The receive path's errors from a raw iWARP initiator (MPA revision 1, FPDUs with CRC32C), each answered as Linux
 * siw answers it ({@code drivers/infiniband/sw/siw/siw_qp_rx.c}): the TERMINATE {@code siw_init_terminate} sets up
 * (layer, error type and code of RFC 5040 section 7 and RFC 5041 section 7, as {@code iwarp.h} numbers them), the
 * async event {@code siw_qp_event} raises or none, the completion {@code siw_rdmap_complete} gives the message the
 * error ended, and the connection dropped by {@code siw_tcp_rx_data} ({@code siw_qp_cm_drop(qp, 1)}: CLOSE alone, the
 * QP in ERR, what was left flushed by {@code siw_qp_llp_close}).
 */
@Timeout(60)
class SiwRxErrorTest {
    private static final int SEG = 4096;

    private final SiwHosts h = new SiwHosts(63, 64);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    /** An FPDU: DDP control byte {@code ddp}, RDMAP control byte {@code rdmap}, then {@code rest}. */
    private static byte[] fpdu(int ddp, int rdmap, byte[] rest) {
        int ulpdu = 2 + rest.length;
        ByteBuffer f = ByteBuffer.allocate(Mpa.fpduLength(ulpdu));
        f.position(2);
        f.put((byte) ddp).put((byte) rdmap).put(rest);
        Mpa.seal(f, 0, ulpdu);
        return f.array();
    }

    /** An untagged segment of {@code opcode} (versions 1). */
    private static byte[] untagged(int opcode, boolean last, int invStag, int qn, int msn, int mo, byte[] payload) {
        int ulpdu = Iwarp.UNTAGGED_HDR + payload.length;
        ByteBuffer f = ByteBuffer.allocate(Mpa.fpduLength(ulpdu));
        ByteBuffer b = f.slice(2, ulpdu);
        Iwarp.untagged(b, opcode, last, invStag, qn, msn, mo);
        b.put(payload);
        Mpa.seal(f, 0, ulpdu);
        return f.array();
    }

    /** A READ request with MSN {@code msn} of {@code size} bytes, STag 1 into STag 2, {@code extra} bytes after it. */
    private static byte[] readRequest(int msn, int size, int extra) {
        ByteBuffer body = ByteBuffer.allocate(Iwarp.READ_REQUEST_BODY + extra);
        Iwarp.readRequest(body, 2, 0, size, 1, 0);
        return untagged(Iwarp.OP_READ_REQUEST, true, 0, Iwarp.QN_READ_REQUEST, msn, 0, body.array());
    }

    /** The next FPDU siw sends on {@code s}, which must be its TERMINATE. */
    private static Terminate terminateFrom(Socket s) throws IOException {
        return SiwRxPlacementTest.terminate(new DataInputStream(s.getInputStream()));
    }

    /** siw ended the stream without a TERMINATE: no FPDU, only the end (or the reset of a close with bytes unread). */
    private static void endsWithoutTerminate(InputStream in) throws IOException {
        try {
            assertEquals(-1, in.read(), "no TERMINATE: the stream just ends");
        } catch (SocketException reset) {
            // siw closed its socket with bytes of ours unread: still nothing was sent
        }
    }

    /** The receiver in ERR after its own drop: CLOSE alone, no async event beyond {@code event} (null: none). */
    private void droppedBy(QueuePair qb, EventType event) {
        if (event != null) {
            assertEquals(event, h.b.asyncEvent().type());
        }
        SiwTerminateTest.closedAfterItsTerminate(h.b, qb);
    }

    private List<String> completions(int n) {
        return SiwHosts.poll(h.b.cq, n).stream().map(w -> w.wrId() + " " + w.status() + " " + w.byteLen()).toList();
    }

    private IwListen listen() {
        return h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
    }

    /**
     * {@code siw_proc_send} takes the receive on a SEND's first segment ({@code siw_rqe_get}) before
     * {@code siw_send_check_ntoh} finds the MSN other than the one expected: DDP Untagged Buffer Error, Invalid MSN
     * (0x03), QP_FATAL, and {@code siw_rdmap_complete(qp, -EINVAL)} completes that receive with GENERAL_ERR and no
     * bytes; the receive behind it is flushed.
     */
    @Test
    void aSendWithTheWrongMsnTakesItsReceiveAndFailsIt() throws Exception {
        QueuePair qb = h.b.rc();
        qb.postRecv(List.of(RecvWr.of(1, h.b.sge(0, SEG)), RecvWr.of(2, h.b.sge(SEG, SEG))));
        try (IwListen l = listen(); Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            s.getOutputStream().write(SiwRxPlacementTest.send(true, 2, 0, SiwHosts.random(64, 1)));
            assertEquals(new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER,
                    Terminate.DDP_UT_INVALID_MSN), terminateFrom(s));
            assertEquals(List.of("1 GENERAL_ERR 0", "2 WR_FLUSH_ERR 0"), completions(2));
            droppedBy(qb, EventType.QP_FATAL);
        }
    }

    /**
     * A SEND's second segment restarting at message offset 0 continues the message (the first had no Last flag,
     * {@code more_ddp_segs}), so {@code siw_send_check_ntoh} finds the offset other than the bytes placed: DDP
     * Untagged Buffer Error, Invalid MO (0x04), QP_FATAL, and the receive completes with GENERAL_ERR and the bytes of
     * the first segment.
     */
    @Test
    void aSegmentAtTheWrongOffsetFailsItsReceiveWithTheBytesBefore() throws Exception {
        QueuePair qb = h.b.rc();
        qb.postRecv(List.of(RecvWr.of(1, h.b.sge(0, 4 * SEG))));
        byte[] data = SiwHosts.random(SEG, 2);
        try (IwListen l = listen(); Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            s.getOutputStream().write(SiwRxPlacementTest.concat(SiwRxPlacementTest.send(false, 1, 0, data),
                    SiwRxPlacementTest.send(true, 1, 0, SiwHosts.random(SEG, 3))));
            assertEquals(new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER,
                    Terminate.DDP_UT_INVALID_MO), terminateFrom(s));
            assertEquals(List.of("1 GENERAL_ERR " + SEG), completions(1));
            assertArrayEquals(data, h.b.read(0, SEG), "the first segment placed, the second not");
            droppedBy(qb, EventType.QP_FATAL);
        }
    }

    /**
     * A SEND carrying queue number 1: siw takes a segment by its opcode ({@code iwarp_pktinfo}), not its queue, so
     * {@code siw_proc_send} takes the receive and {@code siw_send_check_ntoh} refuses the queue: DDP Untagged Buffer
     * Error, Invalid QN (0x01), QP_FATAL, the receive failed with GENERAL_ERR.
     */
    @Test
    void aSendOnTheReadQueueIsAnInvalidQueueNumber() throws Exception {
        QueuePair qb = h.b.rc();
        qb.postRecv(List.of(RecvWr.of(1, h.b.sge(0, SEG))));
        try (IwListen l = listen(); Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            s.getOutputStream().write(untagged(Iwarp.OP_SEND, true, 0, Iwarp.QN_READ_REQUEST, 1, 0,
                    SiwHosts.random(64, 4)));
            assertEquals(new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER,
                    Terminate.DDP_UT_INVALID_QN), terminateFrom(s));
            assertEquals(List.of("1 GENERAL_ERR 0"), completions(1));
            droppedBy(qb, EventType.QP_FATAL);
        }
    }

    /**
     * A SEND with Invalidate whose STag {@code siw_invalidate_stag} refuses ({@code siw_rdmap_complete}): a TERMINATE
     * of the RDMAP layer, code Cannot Invalidate (0x09), of type Remote Protection Error when a region of another PD
     * holds the STag ({@code -EACCES}) and Remote Operation Error when no region does ({@code -EINVAL}), is set up
     * ({@code siw_init_terminate}); the receive completes with REM_INV_REQ_ERR and the bytes placed
     * ({@code siw_rqe_complete}, which moves nothing), and no async event is raised. The QP stays in RTS on its
     * connection: the next SEND is placed into the next receive (bytes checked). The TERMINATE goes out when the
     * connection is dropped: a modify to ERR ({@code siw_qp_cm_drop(qp, 0)}, {@code siw_send_terminate}) sends it,
     * then the stream ends, with CLOSE alone; the receive left is flushed.
     */
    @ParameterizedTest(name = "another PD's region: {0}")
    @ValueSource(booleans = {false, true})
    void aSendWithAnStagThatCannotBeInvalidatedFailsItsReceiveAndKeepsTheQpInRts(boolean otherPd) throws Exception {
        QueuePair qb = h.b.rc();
        qb.postRecv(List.of(RecvWr.of(1, h.b.sge(0, SEG)), RecvWr.of(2, h.b.sge(SEG, SEG)),
                RecvWr.of(3, h.b.sge(2 * SEG, SEG))));
        MemoryRegion other = h.b.ctx.allocPd().regMr(h.b.buf, SiwHosts.BUF, SiwHosts.ALL);
        int stag = otherPd ? other.rkey() : other.rkey() ^ 0x00ff_0000;
        byte[] data = SiwHosts.random(100, 5);
        byte[] next = SiwHosts.random(200, 6);
        try (IwListen l = listen(); Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            s.getOutputStream().write(untagged(Iwarp.OP_SEND_INV, true, stag, Iwarp.QN_SEND, 1, 0, data));
            WorkCompletion w = SiwHosts.one(h.b.cq);
            assertEquals(List.of(1L, WcStatus.REM_INV_REQ_ERR, 100L, 0), List.of(w.wrId(), w.status(), w.byteLen(),
                    w.invalidatedRkey()), w.toString());
            assertArrayEquals(data, h.b.read(0, 100));
            assertEquals(QpState.RTS, qb.query().qpState(), "siw_rqe_complete moves nothing");

            s.getOutputStream().write(untagged(Iwarp.OP_SEND, true, 0, Iwarp.QN_SEND, 2, 0, next));
            assertEquals(List.of("2 SUCCESS 200"), completions(1));
            assertArrayEquals(next, h.b.read(SEG, next.length));
            assertEquals(0, SiwHosts.counter(h.db, "dmaplane_terminate_sent"), "not before the drop");

            qb.modify(QpAttr.builder().state(QpState.ERR).build());
            assertEquals(new Terminate(Terminate.LAYER_RDMAP, otherPd ? Terminate.RDMAP_REMOTE_PROTECTION
                    : Terminate.RDMAP_REMOTE_OPERATION, Terminate.RDMAP_CANNOT_INVALIDATE),
                    terminateFrom(s));
            endsWithoutTerminate(s.getInputStream());
        }
        assertEquals(List.of("3 WR_FLUSH_ERR 0"), completions(1));
        SiwTerminateTest.closedAfterItsTerminate(h.b, qb);
    }

    /**
     * {@code siw_get_hdr}'s checks, before anything of the segment is looked at, none raising an async event: a DDP
     * version other than 1 (DDP layer, Tagged Buffer Error with code 0x04 for a tagged segment, Untagged Buffer
     * Error with 0x06 for an untagged one), an RDMAP version other than 1 (RDMAP layer, Remote Operation Error,
     * Invalid RDMAP Version 0x05), an opcode above Terminate (Remote Operation Error, Unexpected Opcode 0x06). The
     * receive posted is flushed.
     */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"tagged DDP version 0", "untagged DDP version 2", "RDMAP version 2", "opcode 9"})
    void aBadHeaderIsTerminatedWithoutAnAsyncEvent(String what) throws Exception {
        QueuePair qb = h.b.rc();
        qb.postRecv(List.of(RecvWr.of(1, h.b.sge(0, SEG))));
        byte[] rest = new byte[Iwarp.UNTAGGED_HDR - 2 + 16];
        ByteBuffer.wrap(rest).putInt(0).putInt(0).putInt(1).putInt(0); // QN 0, MSN 1, MO 0 when untagged
        byte[] bad;
        Terminate expected;
        switch (what) {
            case "tagged DDP version 0" -> {
                bad = fpdu(0xc0, 0x40, rest);
                expected = new Terminate(Terminate.LAYER_DDP, Terminate.DDP_TAGGED_BUFFER,
                        Terminate.DDP_T_INVALID_VERSION);
            }
            case "untagged DDP version 2" -> {
                bad = fpdu(0x42, 0x43, rest);
                expected = new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER,
                        Terminate.DDP_UT_INVALID_VERSION);
            }
            case "RDMAP version 2" -> {
                bad = fpdu(0x41, 0x83, rest);
                expected = new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_REMOTE_OPERATION,
                        Terminate.RDMAP_INVALID_VERSION);
            }
            default -> {
                bad = fpdu(0x41, 0x49, rest);
                expected = new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_REMOTE_OPERATION,
                        Terminate.RDMAP_UNEXPECTED_OPCODE);
            }
        }
        try (IwListen l = listen(); Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            s.getOutputStream().write(bad);
            assertEquals(expected, terminateFrom(s));
            assertEquals(List.of("1 WR_FLUSH_ERR 0"), completions(1));
            droppedBy(qb, null);
        }
    }

    /**
     * A READ request or a TERMINATE inside a SEND whose last segment has not come: {@code siw_get_hdr}'s packet
     * intersection, {@code -EPROTO} with no TERMINATE set up; {@code siw_tcp_rx_data} ends the SEND in error
     * ({@code siw_rdmap_complete}: the receive with GENERAL_ERR and the bytes placed) and drops the connection: no
     * TERMINATE on the wire, CLOSE alone, no async event, and the TERMINATE is not taken as one.
     */
    @ParameterizedTest(name = "{0} inside a SEND")
    @ValueSource(strings = {"READ request", "TERMINATE"})
    void anUntaggedSegmentInsideASendIsAnIntersection(String what) throws Exception {
        QueuePair qb = h.b.rc();
        qb.postRecv(List.of(RecvWr.of(1, h.b.sge(0, 4 * SEG))));
        byte[] inside = what.equals("TERMINATE")
                ? new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_LOCAL_CATASTROPHIC, 0xff).fpdu()
                : readRequest(1, 64, 0);
        try (IwListen l = listen(); Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            OutputStream out = s.getOutputStream();
            out.write(SiwRxPlacementTest.concat(SiwRxPlacementTest.send(false, 1, 0, SiwHosts.random(SEG, 6)),
                    inside));
            endsWithoutTerminate(s.getInputStream());
            assertEquals(List.of("1 GENERAL_ERR " + SEG), completions(1));
            droppedBy(qb, null);
        }
        assertEquals(0, SiwHosts.counter(h.db, "dmaplane_terminate_sent"));
        assertEquals(0, SiwHosts.counter(h.db, "dmaplane_terminate_received"));
    }

    /**
     * {@code siw_proc_rreq}: a READ request carrying bytes after its header is {@code -EPROTO} with no TERMINATE set
     * up; the connection is dropped, CLOSE alone, no async event.
     */
    @Test
    void aReadRequestCarryingDataIsDroppedWithoutTerminate() throws Exception {
        QueuePair qb = h.b.rc();
        try (IwListen l = listen(); Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            s.getOutputStream().write(readRequest(1, 64, 4));
            endsWithoutTerminate(s.getInputStream());
            droppedBy(qb, null);
        }
        assertEquals(0, SiwHosts.counter(h.db, "dmaplane_terminate_sent"));
    }

    /**
     * {@code siw_init_rresp}: a READ request whose MSN is not the one expected on queue 1 is a DDP Untagged Buffer
     * Error, Invalid MSN (0x03), with no async event; nothing is read or sent back but the TERMINATE.
     */
    @Test
    void aReadRequestWithTheWrongMsnIsTerminated() throws Exception {
        QueuePair qb = h.b.rc();
        try (IwListen l = listen(); Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            s.getOutputStream().write(readRequest(2, 64, 0));
            assertEquals(new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER,
                    Terminate.DDP_UT_INVALID_MSN), terminateFrom(s));
            droppedBy(qb, null);
        }
    }

    /**
     * A Read Response while no READ waits for one ({@code siw_orqe_start_rx} finds the ORQ empty): DDP Catastrophic
     * Error, code 0, no async event, and nothing placed, though the STag it names takes remote writes.
     */
    @Test
    void aReadResponseWithoutAReadIsCatastrophicAndPlacesNothing() throws Exception {
        QueuePair qb = h.b.rc();
        try (IwListen l = listen(); Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            s.getOutputStream().write(SiwRxPlacementTest.readResponse(true, h.b.mr.rkey(), h.b.buf, SiwHosts.random(64, 7)));
            assertEquals(new Terminate(Terminate.LAYER_DDP, Terminate.DDP_CATASTROPHIC, Terminate.DDP_C_UNSPECIFIED),
                    terminateFrom(s));
            assertArrayEquals(new byte[64], h.b.read(0, 64), "nothing placed");
            droppedBy(qb, null);
        }
    }

    /**
     * A Read Response to the READ waiting for it that names another sink STag ({@code siw_rresp_check_ntoh}): DDP
     * Tagged Buffer Error, Invalid STag, QP_FATAL, and the READ completes with GENERAL_ERR
     * ({@code siw_rdmap_complete}), nothing placed.
     */
    @Test
    void aReadResponseForAnotherSinkFailsTheRead() throws Exception {
        QueuePair qb = h.b.rc();
        try (IwListen l = listen(); Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            qb.postSend(new SendWr.RdmaRead(5, List.of(h.b.sge(0, 64)), SIGNALED, 0x1000, 0x77));
            DataInputStream in = new DataInputStream(s.getInputStream());
            int len = in.readUnsignedShort();
            byte[] req = new byte[Mpa.fpduLength(len)];
            in.readFully(req, 2, req.length - 2);
            ByteBuffer r = ByteBuffer.wrap(req);
            assertEquals(Iwarp.OP_READ_REQUEST, req[3] & 0x0f, "siw's READ request");
            int sinkStag = r.getInt(2 + Iwarp.UNTAGGED_HDR);
            long sinkTo = r.getLong(2 + Iwarp.UNTAGGED_HDR + 4);
            s.getOutputStream().write(SiwRxPlacementTest.readResponse(true, sinkStag ^ 0x100, sinkTo, SiwHosts.random(64, 8)));
            assertEquals(new Terminate(Terminate.LAYER_DDP, Terminate.DDP_TAGGED_BUFFER, Terminate.DDP_T_INVALID_STAG),
                    SiwRxPlacementTest.terminate(in));
            WorkCompletion w = SiwHosts.one(h.b.cq);
            assertEquals(List.of(5L, WcStatus.GENERAL_ERR), List.of(w.wrId(), w.status()), w.toString());
            assertArrayEquals(new byte[64], h.b.read(0, 64), "nothing placed");
            droppedBy(qb, EventType.QP_FATAL);
        }
    }

    /**
     * A WRITE's second segment at a tagged offset other than the one its message reached
     * ({@code siw_write_check_ntoh}): DDP Tagged Buffer Error, Base or Bounds, QP_FATAL; the first segment placed,
     * the second not.
     */
    @Test
    void aWriteSegmentAtTheWrongOffsetIsBaseOrBounds() throws Exception {
        QueuePair qb = h.b.rc();
        byte[] first = SiwHosts.random(SEG, 9);
        try (IwListen l = listen(); Socket s = SiwRxPlacementTest.connect(h.b, qb, l)) {
            s.getOutputStream().write(SiwRxPlacementTest.concat(
                    SiwRxPlacementTest.write(false, h.b.mr.rkey(), h.b.buf, first),
                    SiwRxPlacementTest.write(true, h.b.mr.rkey(), h.b.buf + 2L * SEG, SiwHosts.random(SEG, 10))));
            assertEquals(new Terminate(Terminate.LAYER_DDP, Terminate.DDP_TAGGED_BUFFER, Terminate.DDP_T_BASE_BOUNDS),
                    terminateFrom(s));
            assertArrayEquals(first, h.b.read(0, SEG));
            assertArrayEquals(new byte[SEG], h.b.read(2L * SEG, SEG), "the second segment not placed");
            droppedBy(qb, EventType.QP_FATAL);
        }
    }
}
