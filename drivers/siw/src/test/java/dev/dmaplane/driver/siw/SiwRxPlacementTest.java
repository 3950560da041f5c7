package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.Socket;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The receive path's placement from a raw iWARP peer (MPA revision 1, RFC 5044 FPDUs with CRC32C): a message's
 * buffers are leased once for the bytes of it already read off the stream and let go before the receive thread
 * waits for more, as {@code siw_proc_write} and {@code siw_proc_send} ({@code siw_qp_rx.c}) resolve the memory on a
 * message's first segment and keep it for the message. A peer that stalls in the middle of a message therefore holds
 * off no deregistration, and a segment that reaches beyond what the STag or the receive grants fails exactly where a
 * lease per segment would: the bytes before it placed, the TERMINATE of RFC 5040 section 7 naming the error (DDP
 * Tagged Buffer Error, Base or Bounds; Untagged Buffer Error, message too long).
 */
@Timeout(60)
class SiwRxPlacementTest {
    private static final int SEG = 16 << 10;
    /** The raw initiator's MPA request: revision 1, CRC, no markers, no private data. */
    static final byte[] REQUEST = Mpa.frame(false, false, Mpa.REVISION_1, null, new byte[0]);

    private final SiwHosts h = new SiwHosts(61, 62);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    /** A raw initiator's established stream to b's QP {@code qb}: the MPA exchange done, b in RTS. */
    static Socket connect(SiwHosts.Host b, QueuePair qb, IwListen l) throws IOException {
        return connect(b, qb, l, new byte[Mpa.RR_HDR]);
    }

    /**
     * {@link #connect(SiwHosts.Host, QueuePair, IwListen)} with siw's MPA reply read into {@code reply}; the request
     * sent is {@link #REQUEST}.
     */
    static Socket connect(SiwHosts.Host b, QueuePair qb, IwListen l, byte[] reply) throws IOException {
        Socket s = new Socket();
        s.connect(l.local(), 10_000);
        s.setSoTimeout(10_000);
        s.getOutputStream().write(REQUEST);
        SiwHosts.expect(b.event(), IwCmEvent.Type.CONNECT_REQUEST).request()
                .accept(qb.qpNum(), new IwConnParam(null, 1, 1), b.events::add);
        SiwHosts.expect(b.event(), IwCmEvent.Type.ESTABLISHED);
        new DataInputStream(s.getInputStream()).readFully(reply);
        return s;
    }

    /** A tagged RDMA WRITE segment of {@code payload} at {@code to} of {@code stag}. */
    static byte[] write(boolean last, int stag, long to, byte[] payload) {
        return tagged(Iwarp.OP_WRITE, last, stag, to, payload);
    }

    /** A Read Response segment of {@code payload} into {@code stag} at {@code to}. */
    static byte[] readResponse(boolean last, int stag, long to, byte[] payload) {
        return tagged(Iwarp.OP_READ_RESPONSE, last, stag, to, payload);
    }

    /** A tagged segment of RDMAP {@code opcode} carrying {@code payload} at {@code to} of {@code stag}, as one FPDU. */
    private static byte[] tagged(int opcode, boolean last, int stag, long to, byte[] payload) {
        int ulpdu = Iwarp.TAGGED_HDR + payload.length;
        ByteBuffer f = ByteBuffer.allocate(Mpa.fpduLength(ulpdu));
        ByteBuffer b = f.slice(2, ulpdu);
        Iwarp.tagged(b, opcode, last, stag, to);
        b.put(payload);
        Mpa.seal(f, 0, ulpdu);
        return f.array();
    }

    /** An untagged SEND segment of {@code payload} at message offset {@code mo} of message {@code msn}. */
    static byte[] send(boolean last, int msn, int mo, byte[] payload) {
        int ulpdu = Iwarp.UNTAGGED_HDR + payload.length;
        ByteBuffer f = ByteBuffer.allocate(Mpa.fpduLength(ulpdu));
        ByteBuffer b = f.slice(2, ulpdu);
        Iwarp.untagged(b, Iwarp.OP_SEND, last, 0, Iwarp.QN_SEND, msn, mo);
        b.put(payload);
        Mpa.seal(f, 0, ulpdu);
        return f.array();
    }

    static byte[] concat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) {
            n += p.length;
        }
        byte[] r = new byte[n];
        int at = 0;
        for (byte[] p : parts) {
            System.arraycopy(p, 0, r, at, p.length);
            at += p.length;
        }
        return r;
    }

    /** The next FPDU from siw, which must be its TERMINATE (untagged, queue 2, good CRC). */
    static Terminate terminate(DataInputStream in) throws IOException {
        int len = in.readUnsignedShort();
        byte[] f = new byte[Mpa.fpduLength(len)];
        f[0] = (byte) (len >>> 8);
        f[1] = (byte) len;
        in.readFully(f, 2, f.length - 2);
        return SiwMpaTerminateTest.terminate(f);
    }

    /**
     * The first segment of a WRITE is placed and the peer goes quiet: the region it writes into deregisters at once
     * (no lease is held while the receive thread waits), and the rest of the WRITE, arriving after, finds no STag:
     * DDP Tagged Buffer Error, Invalid STag, the responder's QP in ERR with QP_ACCESS_ERR.
     */
    @Test
    void aWriteStalledMidMessageHoldsOffNoDeregistration() throws Exception {
        QueuePair qb = h.b.rc();
        MemoryRegion extra = h.b.pd.regMr(h.b.buf, SiwHosts.BUF, SiwHosts.ALL);
        byte[] first = SiwHosts.random(SEG, 1);
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = connect(h.b, qb, l)) {
            OutputStream out = s.getOutputStream();
            out.write(write(false, extra.rkey(), h.b.buf, first));
            eventually(() -> Arrays.equals(first, h.b.read(0, SEG)), SiwHosts.WAIT, "the first segment placed");

            // a lease kept for the stalled message would hold this off until the stream ends (the socket's close)
            Thread dereg = Thread.ofPlatform().name("dereg").start(extra::destroy);
            assertTrue(dereg.join(SiwHosts.WAIT), "ibv_dereg_mr waits for a message the peer does not finish");

            out.write(write(true, extra.rkey(), h.b.buf + SEG, SiwHosts.random(SEG, 2)));
            DataInputStream in = new DataInputStream(s.getInputStream());
            assertEquals(new Terminate(Terminate.LAYER_DDP, Terminate.DDP_TAGGED_BUFFER, Terminate.DDP_T_INVALID_STAG),
                    terminate(in));
            assertEquals(EventType.QP_ACCESS_ERR, h.b.asyncEvent().type());
            assertEquals(QpState.ERR, qb.query().qpState());
            assertArrayEquals(new byte[SEG], h.b.read(SEG, SEG), "nothing of the refused segment placed");
        }
    }

    /**
     * One WRITE in four segments, sent in one piece, whose last segment runs past the end of the region: the lease
     * of the whole buffered message is refused, so the segments are placed one by one; the first three land, the
     * last is answered with DDP Tagged Buffer Error, Base or Bounds.
     */
    @Test
    void aWriteRunningPastTheRegionPlacesWhatFitsAndTerminatesAtTheSegmentBeyond() throws Exception {
        QueuePair qb = h.b.rc();
        long to = h.b.buf + SiwHosts.BUF - 3L * SEG;
        byte[] data = SiwHosts.random(4 * SEG, 3);
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = connect(h.b, qb, l)) {
            byte[][] segs = new byte[4][];
            for (int i = 0; i < 4; i++) {
                segs[i] = write(i == 3, h.b.mr.rkey(), to + (long) i * SEG,
                        Arrays.copyOfRange(data, i * SEG, (i + 1) * SEG));
            }
            s.getOutputStream().write(concat(segs));
            DataInputStream in = new DataInputStream(s.getInputStream());
            assertEquals(new Terminate(Terminate.LAYER_DDP, Terminate.DDP_TAGGED_BUFFER, Terminate.DDP_T_BASE_BOUNDS),
                    terminate(in));
            assertEquals(EventType.QP_ACCESS_ERR, h.b.asyncEvent().type());
            assertArrayEquals(Arrays.copyOf(data, 3 * SEG), h.b.read(SiwHosts.BUF - 3L * SEG, 3 * SEG),
                    "the segments inside the region placed");
        }
    }

    /**
     * A SEND of five segments, sent in one piece, into a receive of two SGEs (2.5 and 1 segments, in that order in
     * different places): every byte lands where the SGL says.
     */
    @Test
    void aSendAcrossTwoSgesIsPlacedWhereTheListSays() throws Exception {
        QueuePair qb = h.b.rc();
        int firstLen = 5 * SEG / 2;
        qb.postRecv(new RecvWr(7, List.of(h.b.sge(SEG, firstLen), h.b.sge(1 << 20, 5L * SEG / 2))));
        byte[] data = SiwHosts.random(5 * SEG, 4);
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = connect(h.b, qb, l)) {
            byte[][] segs = new byte[5][];
            for (int i = 0; i < 5; i++) {
                segs[i] = send(i == 4, 1, i * SEG, Arrays.copyOfRange(data, i * SEG, (i + 1) * SEG));
            }
            s.getOutputStream().write(concat(segs));
            WorkCompletion wc = SiwHosts.one(h.b.cq);
            assertEquals(WcStatus.SUCCESS, wc.status());
            assertEquals(5L * SEG, wc.byteLen());
            assertArrayEquals(Arrays.copyOf(data, firstLen), h.b.read(SEG, firstLen));
            assertArrayEquals(Arrays.copyOfRange(data, firstLen, 5 * SEG), h.b.read(1 << 20, 5 * SEG - firstLen));
            assertEquals(QpState.RTS, qb.query().qpState());
        }
    }

    /**
     * A SEND of three segments into a receive of two: the first two are placed, the third is too long for the
     * receive, and the peer gets DDP Untagged Buffer Error, Invalid MSN - no buffer available (0x02), the code
     * {@code siw_send_check_ntoh} sends, not Message Too Long. As that function has it:
     * the receive completes with LOC_LEN_ERR and the bytes of the two segments placed ({@code siw_rdmap_complete}
     * reports {@code wqe->processed}), and QP_FATAL is raised.
     */
    @Test
    void aSendLongerThanItsReceiveFailsAtTheSegmentBeyond() throws Exception {
        QueuePair qb = h.b.rc();
        qb.postRecv(new RecvWr(8, List.of(new Sge(h.b.buf, 2L * SEG, h.b.mr.lkey()))));
        byte[] data = SiwHosts.random(3 * SEG, 5);
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = connect(h.b, qb, l)) {
            s.getOutputStream().write(concat(send(false, 1, 0, Arrays.copyOf(data, SEG)),
                    send(false, 1, SEG, Arrays.copyOfRange(data, SEG, 2 * SEG)),
                    send(true, 1, 2 * SEG, Arrays.copyOfRange(data, 2 * SEG, 3 * SEG))));
            DataInputStream in = new DataInputStream(s.getInputStream());
            assertEquals(new Terminate(Terminate.LAYER_DDP, Terminate.DDP_UNTAGGED_BUFFER, Terminate.DDP_UT_NO_BUFFER),
                    terminate(in), "siw_send_check_ntoh: DDP_ECODE_UT_INVALID_MSN_NOBUF, not Message Too Long");
            WorkCompletion w = SiwHosts.one(h.b.cq);
            assertEquals(List.of(WcStatus.LOC_LEN_ERR, 2L * SEG), List.of(w.status(), w.byteLen()), w.toString());
            assertArrayEquals(Arrays.copyOf(data, 2 * SEG), h.b.read(0, 2 * SEG), "the two that fit placed");
            assertEquals(EventType.QP_FATAL, h.b.asyncEvent().type());
            assertTrue(qb.query().qpState() == QpState.ERR);
        }
    }

    /**
     * A SEND cut after its first segment by a modify to ERR ({@code siw_qp_nextstate_from_rts}: ERROR flushes and
     * drops the connection, no TERMINATE) or by the peer dropping its connection ({@code siw_qp_llp_close}): the
     * receive being filled completes with WR_FLUSH_ERR ({@code siw_rq_flush} flushes the in-progress receive of
     * {@code rx_untagged} first, {@code siw_wqe_put_mem} dropping its memory) and a byte length of
     * {@code wqe->bytes}, the length of its SGL ({@code siw_rqe_get} sums the SGEs into it), the region under it
     * deregisters at once and unpins, and nothing lands past the segment that arrived, not even what the peer sends
     * after.
     */
    @ParameterizedTest(name = "cut by {0}")
    @ValueSource(strings = {"modify to ERR", "the peer's drop"})
    void aSendCutInTheMiddleFlushesItsReceiveAndLeavesNothingLeased(String cut) throws Exception {
        QueuePair qb = h.b.rc();
        long pinned = h.b.mm.pinnedPages();
        MemoryRegion extra = h.b.pd.regMr(h.b.buf, SiwHosts.BUF, SiwHosts.ALL);
        qb.postRecv(new RecvWr(9, List.of(new Sge(h.b.buf, 4L * SEG, extra.lkey()))));
        byte[] data = SiwHosts.random(3 * SEG, 6);
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = connect(h.b, qb, l)) {
            OutputStream out = s.getOutputStream();
            out.write(send(false, 1, 0, Arrays.copyOf(data, SEG)));
            eventually(() -> Arrays.equals(Arrays.copyOf(data, SEG), h.b.read(0, SEG)), SiwHosts.WAIT,
                    "the first segment placed");
            if (cut.startsWith("modify")) {
                qb.modify(QpAttr.builder().state(QpState.ERR).build());
                assertEquals(-1, s.getInputStream().read(), "the stream closed, no TERMINATE");
            } else {
                s.close();
                assertEquals(IwCmEvent.Type.DISCONNECT, h.b.event().type());
                SiwHosts.expect(h.b.event(), IwCmEvent.Type.CLOSE);
            }
            WorkCompletion wc = SiwHosts.one(h.b.cq);
            assertEquals(List.of(9L, WcStatus.WR_FLUSH_ERR, 4L * SEG), List.of(wc.wrId(), wc.status(), wc.byteLen()),
                    "siw_rq_flush reports wqe->bytes, the receive's length, not the segment placed: " + wc);
            assertEquals(QpState.ERR, qb.query().qpState());
            assertDeregistersAtOnceAndUnpins(extra, pinned);
            if (!s.isClosed()) {
                sendQuietly(out, concat(send(false, 1, SEG, Arrays.copyOfRange(data, SEG, 2 * SEG)),
                        send(true, 1, 2 * SEG, Arrays.copyOfRange(data, 2 * SEG, 3 * SEG))));
            }
        }
        assertArrayEquals(new byte[3 * SEG], h.b.read(SEG, 3 * SEG), "nothing past the segment that arrived");
        assertTrue(h.b.cq.poll(4).isEmpty(), "one completion only");
    }

    /**
     * A tagged WRITE cut after its first segment by the peer dropping its connection: the QP goes to ERR with a
     * flush of the receive waiting ({@code siw_qp_llp_close}, {@code siw_rq_flush}: the tagged message in progress
     * has no work request and only its memory is put), DISCONNECT and CLOSE are reported, the region written into
     * deregisters at once and unpins, and nothing lands past the segment that arrived.
     */
    @Test
    void aWriteCutByThePeersDropLeavesNothingLeasedOrPlaced() throws Exception {
        QueuePair qb = h.b.rc();
        long pinned = h.b.mm.pinnedPages();
        MemoryRegion extra = h.b.pd.regMr(h.b.buf, SiwHosts.BUF, SiwHosts.ALL);
        qb.postRecv(new RecvWr(10, List.of(h.b.sge(1 << 20, 64))));
        byte[] first = SiwHosts.random(SEG, 7);
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = connect(h.b, qb, l)) {
            s.getOutputStream().write(write(false, extra.rkey(), h.b.buf, first));
            eventually(() -> Arrays.equals(first, h.b.read(0, SEG)), SiwHosts.WAIT, "the first segment placed");
        }
        assertEquals(IwCmEvent.Type.DISCONNECT, h.b.event().type());
        SiwHosts.expect(h.b.event(), IwCmEvent.Type.CLOSE);
        WorkCompletion wc = SiwHosts.one(h.b.cq);
        assertEquals(List.of(10L, WcStatus.WR_FLUSH_ERR), List.of(wc.wrId(), wc.status()), wc.toString());
        assertEquals(QpState.ERR, qb.query().qpState());
        assertDeregistersAtOnceAndUnpins(extra, pinned);
        assertArrayEquals(new byte[SEG], h.b.read(SEG, SEG), "nothing past the segment that arrived");
    }

    /** {@code ibv_dereg_mr} of {@code mr} returns without waiting for a lease, and its pages are unpinned. */
    private void assertDeregistersAtOnceAndUnpins(MemoryRegion mr, long pinnedBefore) throws InterruptedException {
        Thread dereg = Thread.ofPlatform().name("dereg").start(mr::destroy);
        assertTrue(dereg.join(SiwHosts.WAIT), "ibv_dereg_mr waits for a lease of the cut message");
        assertEquals(pinnedBefore, h.b.mm.pinnedPages(), "the region's pages unpinned");
    }

    /** Writes {@code bytes} to a stream siw may have closed already (then the write may fail: nothing to place). */
    private static void sendQuietly(OutputStream out, byte[] bytes) {
        try {
            out.write(bytes);
            out.flush();
        } catch (IOException e) {
            // siw closed the stream: the bytes go nowhere, as they should
        }
    }

    /**
     * A SEND into a receive whose lkey names no region: {@code siw_proc_send}'s {@code siw_check_sge} refuses it,
     * raises QP_ACCESS_ERR and stops; {@code siw_rdmap_complete} completes the receive with GENERAL_ERR and no bytes.
     * The peer gets a TERMINATE of the DDP layer, Catastrophic Error, code 0 ({@code DDP_ECODE_CATASTROPHIC}), and the
     * QP ends in ERR.
     */
    @Test
    void aSendIntoAReceiveWithABadLkeyIsAnAccessError() throws Exception {
        QueuePair qb = h.b.rc();
        qb.postRecv(new RecvWr(9, List.of(new Sge(h.b.buf, SEG, h.b.mr.lkey() ^ 0x5a00))));
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = connect(h.b, qb, l)) {
            s.getOutputStream().write(send(true, 1, 0, SiwHosts.random(64, 6)));
            assertEquals(new Terminate(Terminate.LAYER_DDP, Terminate.DDP_CATASTROPHIC, Terminate.DDP_C_UNSPECIFIED),
                    terminate(new DataInputStream(s.getInputStream())), "siw_proc_send after siw_check_sge");
            WorkCompletion w = SiwHosts.one(h.b.cq);
            assertEquals(List.of(9L, WcStatus.GENERAL_ERR, 0L), List.of(w.wrId(), w.status(), w.byteLen()),
                    w.toString());
            assertEquals(EventType.QP_ACCESS_ERR, h.b.asyncEvent().type());
            assertEquals(QpState.ERR, qb.query().qpState());
        }
    }

    /**
     * A SEND segment across a receive of two SGEs, the second with an lkey that names no region:
     * {@code siw_proc_send} places the first SGE's part of the segment, then {@code siw_check_sge} refuses the second
     * and the loop stops with {@code wqe->processed += rcvd_bytes}, so {@code siw_rdmap_complete} completes the
     * receive with GENERAL_ERR and the 64 bytes of the first SGE (not 0, the bytes of the segments before this one).
     */
    @Test
    void aSgeRefusedPartwayCountsTheSgesPlacedBeforeIt() throws Exception {
        QueuePair qb = h.b.rc();
        qb.postRecv(new RecvWr(9, List.of(h.b.sge(0, 64), new Sge(h.b.buf + 64, 64, h.b.mr.lkey() ^ 0x5a00))));
        byte[] data = SiwHosts.random(128, 8);
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = connect(h.b, qb, l)) {
            s.getOutputStream().write(send(true, 1, 0, data));
            assertEquals(new Terminate(Terminate.LAYER_DDP, Terminate.DDP_CATASTROPHIC, Terminate.DDP_C_UNSPECIFIED),
                    terminate(new DataInputStream(s.getInputStream())), "siw_proc_send after siw_check_sge");
            WorkCompletion w = SiwHosts.one(h.b.cq);
            assertEquals(List.of(9L, WcStatus.GENERAL_ERR, 64L), List.of(w.wrId(), w.status(), w.byteLen()),
                    w.toString());
            assertArrayEquals(Arrays.copyOf(data, 64), h.b.read(0, 64), "the first SGE placed");
            assertEquals(EventType.QP_ACCESS_ERR, h.b.asyncEvent().type());
            assertEquals(QpState.ERR, qb.query().qpState());
        }
    }
}
