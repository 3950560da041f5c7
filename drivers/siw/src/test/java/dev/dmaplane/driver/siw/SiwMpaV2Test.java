package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwConnection;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * MPA revision 2, the enhanced connection establishment of RFC 6581, as {@code siw_cm.c} speaks it
 * ({@code siw_connect}, {@code siw_proc_mpareq}, {@code siw_accept}, {@code siw_proc_mpareply},
 * {@code siw_qp_mpa_rts}, {@code siw_rtr_data_ready}): IRD and ORD exchanged with siw's
 * {@code relaxed_ird_negotiation} (the responder's ORD cut to the initiator's IRD, its IRD raised to the initiator's
 * ORD, the initiator taking the responder's IRD and ORD as its ORD and IRD), the depths in the CM events as
 * {@code siw_cm_upcall} signals them (the initiator's with CONNECT_REQUEST; each side's own, {@code cep->ord} and
 * {@code cep->ird}, with CONNECT_REPLY and ESTABLISHED), the revision falling
 * back to 1 in either direction, a zero-length RDMA WRITE as the RTR message of peer-to-peer mode, and malformed
 * v2 headers refused on both sides.
 */
@Timeout(60)
class SiwMpaV2Test {
    private final SiwHosts h = new SiwHosts(53, 54);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    private SiwProvider pa() {
        return h.da.providers.get("siw0");
    }

    private SiwProvider pb() {
        return h.db.providers.get("siw0");
    }

    /** Connects a to b with the depths given; returns a's and b's connections once both sides reported. */
    private Cep[] connect(QueuePair qa, QueuePair qb, IwConnParam pa, IwConnParam pb, IwCmEvent[] seen) {
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add)) {
            IwConnection ca = h.a.cm.connect(qa.qpNum(), l.local(), pa, h.a.events::add);
            IwCmEvent req = h.b.event();
            assertEquals(IwCmEvent.Type.CONNECT_REQUEST, req.type());
            IwConnection cb = req.request().accept(qb.qpNum(), pb, h.b.events::add);
            seen[0] = req;
            seen[1] = SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);
            seen[2] = SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY);
            return new Cep[]{(Cep) ca, (Cep) cb};
        }
    }

    /**
     * {@code siw_accept} keeps an IRD above the initiator's ORD and an ORD within the initiator's IRD;
     * {@code siw_proc_mpareply} then sets {@code cep->ord = rep_ird}, {@code cep->ird = rep_ord}: a asked for ORD 8
     * and gets b's IRD 16, its IRD is b's ORD 2. {@code siw_cm_upcall} signals {@code cep->ord} and {@code cep->ird}
     * with CONNECT_REPLY and ESTABLISHED, each side's own, and the request's words crossed back with CONNECT_REQUEST
     * ({@code event.ird = cep->ord}, {@code event.ord = cep->ird} after {@code siw_proc_mpareq} took the initiator's
     * IRD as its ORD): the initiator's ORD and IRD.
     */
    @Test
    void v2PeersExchangeIrdAndOrdAndTheInitiatorTakesTheResponders() {
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        IwCmEvent[] e = new IwCmEvent[3];
        // a may have 8 READs outstanding and serves 4; b may have 2 outstanding and serves 16
        Cep[] c = connect(qa, qb, new IwConnParam(new byte[]{1, 2}, 8, 4), new IwConnParam(new byte[]{3}, 2, 16), e);
        assertEquals(List.of(8, 4), List.of(e[0].ord(), e[0].ird()), "CONNECT_REQUEST: the initiator's ORD, IRD");
        assertArrayEquals(new byte[]{1, 2}, e[0].privateData(), "the IRD/ORD words are not the consumer's data");
        assertEquals(List.of(2, 16), List.of(e[1].ord(), e[1].ird()), "ESTABLISHED: the responder's own");
        assertEquals(List.of(16, 2), List.of(e[2].ord(), e[2].ird()), "CONNECT_REPLY: the initiator's own");
        assertArrayEquals(new byte[]{3}, e[2].privateData());
        // b: ORD min(2, a's IRD 4) = 2, IRD 16 (at least a's ORD 8); a: ORD = b's IRD, IRD = b's ORD
        assertEquals(List.of(16, 2), List.of(c[0].negotiatedOrd, c[0].negotiatedIrd));
        assertEquals(List.of(2, 16), List.of(c[1].negotiatedOrd, c[1].negotiatedIrd));
        assertEquals(16, c[0].ord, "the initiator's READs in flight are bounded by the negotiated ORD");
        assertEquals(2, c[1].ord);

        h.b.write(0, SiwHosts.random(4096, 7));
        qa.postSend(new SendWr.RdmaRead(1, List.of(h.a.sge(8192, 4096)), SIGNALED, h.b.buf, h.b.mr.rkey()));
        assertEquals(WcStatus.SUCCESS, SiwHosts.one(h.a.cq).status());
        assertArrayEquals(SiwHosts.random(4096, 7), h.a.read(8192, 4096));
    }

    /**
     * {@code relaxed_ird_negotiation} in {@code siw_accept}: {@code params->ird < cep->ird} raises the responder's
     * IRD to the initiator's ORD (which {@code siw_proc_mpareq} limited to {@code SIW_MAX_IRD_QP}), and
     * {@code params->ord > cep->ord} cuts the responder's ORD to the initiator's IRD; the initiator's ORD stays.
     */
    @Test
    void aResponderIrdBelowTheInitiatorsOrdIsRaisedToItAndItsOrdCut() {
        IwCmEvent[] e = new IwCmEvent[3];
        Cep[] c = connect(h.a.rc(), h.b.rc(), new IwConnParam(null, 16, 3), new IwConnParam(null, 64, 1), e);
        assertEquals(List.of(3, 16), List.of(c[1].negotiatedOrd, c[1].negotiatedIrd),
                "b's ORD cut to a's IRD 3, its IRD 1 raised to a's ORD 16");
        assertEquals(List.of(16, 3), List.of(c[0].negotiatedOrd, c[0].negotiatedIrd), "a's ORD stays 16");
        assertEquals(List.of(16, 3), List.of(e[2].ord(), e[2].ird()), "CONNECT_REPLY tells a its own depths");
        assertEquals(List.of(3, 16), List.of(e[1].ord(), e[1].ird()), "ESTABLISHED tells b its own");
    }

    /**
     * An accept refused before anything is sent (no such QP, EINVAL) leaves the request as it came: a second accept
     * negotiates from the initiator's own depths, not from the refused accept's.
     */
    @Test
    void aRefusedAcceptLeavesTheRequestsDepthsAsTheyCame() {
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add)) {
            Cep ca = (Cep) h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(null, 8, 4), h.a.events::add);
            IwCmEvent req = h.b.event();
            ErrnoException noQp = assertThrows(ErrnoException.class, () -> req.request().accept(0xabcdef,
                    new IwConnParam(null, 2, 16), h.b.events::add));
            assertEquals(Errno.EINVAL, noQp.errno());
            Cep cb = (Cep) req.request().accept(qb.qpNum(), new IwConnParam(null, 8, 4), h.b.events::add);
            IwCmEvent est = SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);
            SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY);
            assertEquals(List.of(4, 8), List.of(cb.negotiatedOrd, cb.negotiatedIrd),
                    "b's ORD min(8, a's IRD 4), IRD max(4, a's ORD 8)");
            assertEquals(List.of(4, 8), List.of(est.ord(), est.ird()), "b's own");
            assertEquals(List.of(8, 4), List.of(ca.negotiatedOrd, ca.negotiatedIrd));
        }
    }

    /**
     * {@code siw_reject} sends the request's header back with the reject bit and, under MPA v2, the words
     * {@code siw_proc_mpareq} prepared for the answer ({@code cep->mpa.v2_ctrl}, which {@code siw_send_mpareqrep}
     * puts in front of the private data): this side's IRD and ORD (the initiator's ORD 9 and IRD 3), the
     * peer-to-peer bit echoed and the RTR message picked, a zero-length READ when the request offers only that.
     * The bytes are read from a raw socket speaking MPA v2 by hand (RFC 6581 section 7.1).
     */
    @Test
    void aV2RejectCarriesThePeerToPeerAndRtrWordsAsSiwRejectSendsThem() throws Exception {
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = new Socket()) {
            s.connect(l.local(), 10_000);
            s.setSoTimeout(10_000);
            ByteBuffer req = ByteBuffer.allocate(Mpa.RR_HDR + 4);
            req.put(Mpa.REQ_KEY).put((byte) 0x50).put((byte) 2).putShort((short) 4); // C and H, revision 2
            req.putShort((short) (0x8000 | 3)).putShort((short) (0x4000 | 9)); // P2P with IRD 3; READ RTR, ORD 9
            s.getOutputStream().write(req.array());
            h.b.event().request().reject(new byte[]{1, 2});
            ByteBuffer want = ByteBuffer.allocate(Mpa.RR_HDR + 6);
            want.put(Mpa.REP_KEY).put((byte) 0x70).put((byte) 2).putShort((short) 6); // C, R and H
            want.putShort((short) (0x8000 | 9)).putShort((short) (0x4000 | 3)).put(new byte[]{1, 2});
            DataInputStream in = new DataInputStream(s.getInputStream());
            byte[] got = new byte[want.capacity()];
            in.readFully(got);
            assertArrayEquals(want.array(), got);
            assertEquals(-1, read(in), "then the stream ends");
        }
    }

    /**
     * No IRD/ORD words in revision 1: {@code siw_proc_mpareq} leaves the zeroed {@code cep->ord} and {@code cep->ird}
     * for CONNECT_REQUEST, and {@code siw_connect} and {@code siw_accept} set them to the caller's own, which
     * CONNECT_REPLY and ESTABLISHED signal.
     */
    @Test
    void aV2InitiatorFallsBackToRevision1WithAV1Responder() {
        pb().mpa(Mpa.REVISION_1, false);
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        IwCmEvent[] e = new IwCmEvent[3];
        Cep[] c = connect(qa, qb, new IwConnParam(new byte[]{5}, 8, 4), new IwConnParam(new byte[]{6}, 2, 16), e);
        assertArrayEquals(new byte[]{5}, e[0].privateData(), "the request reported once, in revision 1");
        assertEquals(List.of(0, 0), List.of(e[0].ord(), e[0].ird()), "MPA v1 carries no IRD/ORD");
        assertEquals(List.of(2, 16), List.of(e[1].ord(), e[1].ird()), "ESTABLISHED: b's own");
        assertEquals(List.of(8, 4), List.of(e[2].ord(), e[2].ird()), "CONNECT_REPLY: a's own");
        assertArrayEquals(new byte[]{6}, e[2].privateData());
        assertEquals(List.of(8, 4), List.of(c[0].negotiatedOrd, c[0].negotiatedIrd), "each side's own depths");
        assertEquals(List.of(2, 16), List.of(c[1].negotiatedOrd, c[1].negotiatedIrd));
        assertNull(h.b.events.peek(), "the rejected revision 2 request was reported to nobody");
        qa.postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 512)), SIGNALED, h.b.buf, h.b.mr.rkey()));
        assertEquals(WcStatus.SUCCESS, SiwHosts.one(h.a.cq).status());
        assertEquals(QpState.RTS, qb.query().qpState());
    }

    @Test
    void aV1InitiatorGetsARevision1ReplyFromAV2Responder() throws Exception {
        pa().mpa(Mpa.REVISION_1, false);
        IwCmEvent[] e = new IwCmEvent[3];
        Cep[] c = connect(h.a.rc(), h.b.rc(), new IwConnParam(null, 3, 3), new IwConnParam(null, 5, 5), e);
        assertEquals(List.of(0, 0), List.of(e[0].ord(), e[0].ird()));
        assertEquals(List.of(5, 5), List.of(e[1].ord(), e[1].ird()));
        assertEquals(List.of(3, 3), List.of(e[2].ord(), e[2].ird()));
        assertEquals(List.of(3, 3), List.of(c[0].negotiatedOrd, c[0].negotiatedIrd));
        assertEquals(List.of(5, 5), List.of(c[1].negotiatedOrd, c[1].negotiatedIrd));
    }

    /** RFC 6581 section 7.1: revision 2 with the H bit and two bytes of private data cannot hold IRD and ORD. */
    @Test
    void aMalformedV2RequestIsRejectedAndNeverReported() throws Exception {
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = new Socket()) {
            s.connect(l.local(), 10_000);
            s.setSoTimeout(10_000);
            ByteBuffer req = ByteBuffer.allocate(Mpa.RR_HDR + 2);
            req.put(Mpa.REQ_KEY).put((byte) (Mpa.FLAG_CRC | Mpa.FLAG_ENHANCED)).put((byte) 2).putShort((short) 2);
            req.put(new byte[]{0, 1});
            s.getOutputStream().write(req.array());
            byte[] rep = new byte[Mpa.RR_HDR];
            new DataInputStream(s.getInputStream()).readFully(rep);
            assertArrayEquals(Mpa.REP_KEY, Arrays.copyOf(rep, 16));
            assertEquals(Mpa.FLAG_REJECT, rep[16] & Mpa.FLAG_REJECT, "the reply rejects");
            assertEquals(2, rep[17], "in the revision asked for");
            assertEquals(-1, read(s.getInputStream()), "and the stream is closed");

            // the listener goes on: a good request is reported
            QueuePair qa = h.a.rc();
            h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(new byte[]{8}, 1, 1), h.a.events::add);
            IwCmEvent good = h.b.event();
            assertEquals(IwCmEvent.Type.CONNECT_REQUEST, good.type());
            assertArrayEquals(new byte[]{8}, good.privateData(), "only the good request was reported");
            good.request().reject(null);
            assertEquals(Errno.ECONNRESET, h.a.event().status(), "siw_proc_mpareply reports a reject so");
        }
    }

    /**
     * A revision 2 reply with the H flag and one byte of private data. {@code siw_proc_mpareply} checks no length
     * before it reads {@code struct mpa_v2_data} from the private data buffer (bytes the reply never held, or no
     * buffer at all when it had none), so Linux has no defined answer; siw here refuses it as the function refuses
     * every reply it cannot read ({@code siw_recv_mpa_rr}'s {@code -EPROTO}, a revision above 2): {@code out_err},
     * CONNECT_REPLY {@code -EINVAL}, no TERMINATE, the stream closed and the QP in ERR by the endpoint's release
     * ({@code siw_cm_work_handler}, {@code siw_qp_llp_close}).
     */
    @Test
    void aV2ReplyWithoutIrdAndOrdFailsTheConnect() throws Exception {
        QueuePair qa = h.a.rc();
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address)) {
            h.a.cm.connect(qa.qpNum(), (InetSocketAddress) server.getLocalSocketAddress(), new IwConnParam(null, 1, 1),
                    h.a.events::add);
            try (Socket s = server.accept()) {
                s.setSoTimeout(10_000);
                DataInputStream in = new DataInputStream(s.getInputStream());
                byte[] req = new byte[Mpa.RR_HDR + Mpa.V2_DATA];
                in.readFully(req);
                assertEquals(2, req[17], "siw asks for revision 2");
                assertEquals(Mpa.FLAG_ENHANCED, req[16] & Mpa.FLAG_ENHANCED);
                assertEquals(Mpa.V2_DATA, ByteBuffer.wrap(req).getShort(18), "IRD and ORD only");
                ByteBuffer rep = ByteBuffer.allocate(Mpa.RR_HDR + 1);
                rep.put(Mpa.REP_KEY).put((byte) (Mpa.FLAG_CRC | Mpa.FLAG_ENHANCED)).put((byte) 2).putShort((short) 1);
                rep.put((byte) 0);
                s.getOutputStream().write(rep.array());
                IwCmEvent e = h.a.event();
                assertEquals(IwCmEvent.Type.CONNECT_REPLY, e.type());
                assertEquals(Errno.EINVAL, e.status());
                assertEquals(-1, read(s.getInputStream()), "the stream is closed without a TERMINATE");
            }
        }
        assertEquals(QpState.ERR, qa.query().qpState(), "the endpoint's release moved the QP to ERR");
    }

    @Test
    void peerToPeerSendsAZeroLengthWriteAsTheRtrMessageBeforeTheResponderSends() throws Exception {
        pa().mpa(Mpa.REVISION_2, true);
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        IwCmEvent[] e = new IwCmEvent[3];
        connect(qa, qb, new IwConnParam(null, 4, 4), new IwConnParam(null, 4, 4), e);
        qb.postSend(new SendWr.RdmaWrite(1, List.of(h.b.sge(0, 100)), SIGNALED, h.a.buf, h.a.mr.rkey()));
        assertEquals(WcStatus.SUCCESS, SiwHosts.one(h.b.cq).status());
        qa.postSend(new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 100)), SIGNALED, h.b.buf, h.b.mr.rkey()));
        assertEquals(WcStatus.SUCCESS, SiwHosts.one(h.a.cq).status());
    }

    /**
     * {@code siw_connect}: with {@code peer_to_peer} an initiator's ORD of 0 becomes 1 ({@code cep->ord = 1}), which
     * its request carries and its CONNECT_REPLY signals.
     */
    @Test
    void aPeerToPeerInitiatorAsksForAtLeastOneRead() {
        pa().mpa(Mpa.REVISION_2, true);
        IwCmEvent[] e = new IwCmEvent[3];
        connect(h.a.rc(), h.b.rc(), new IwConnParam(null, 0, 4), new IwConnParam(null, 4, 0), e);
        assertEquals(List.of(1, 4), List.of(e[0].ord(), e[0].ird()), "CONNECT_REQUEST: the initiator's ORD 1");
        assertEquals(List.of(4, 1), List.of(e[1].ord(), e[1].ird()), "b: ORD min(4, 4), IRD max(0, 1)");
        assertEquals(List.of(1, 4), List.of(e[2].ord(), e[2].ird()), "a: b's IRD and ORD");
    }

    /**
     * A raw initiator asking for peer-to-peer: the responder picks the zero-length WRITE, and reports ESTABLISHED
     * (and lets its TX thread send) only once that RTR message arrived.
     */
    @Test
    void theResponderWaitsForTheRtrMessage() throws Exception {
        QueuePair qb = h.b.rc();
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = new Socket()) {
            s.connect(l.local(), 10_000);
            s.setSoTimeout(10_000);
            Mpa.V2 mine = new Mpa.V2(4, 4, true, Mpa.V2_WRITE_RTR | Mpa.V2_READ_RTR);
            s.getOutputStream().write(Mpa.frame(false, false, Mpa.REVISION_2, mine, new byte[0]));
            IwCmEvent req = h.b.event();
            Cep cb = (Cep) req.request().accept(qb.qpNum(), new IwConnParam(null, 4, 4), h.b.events::add);
            DataInputStream in = new DataInputStream(s.getInputStream());
            byte[] rep = new byte[Mpa.RR_HDR + Mpa.V2_DATA];
            in.readFully(rep);
            Mpa.V2 theirs = Mpa.V2.of(ByteBuffer.wrap(rep).getShort(20) & 0xffff,
                    ByteBuffer.wrap(rep).getShort(22) & 0xffff);
            assertTrue(theirs.peerToPeer());
            assertEquals(Mpa.V2_WRITE_RTR, theirs.rtr(), "siw prefers the zero-length WRITE");
            assertEquals(QpState.RTS, qb.query().qpState());
            qb.postSend(new SendWr.RdmaWrite(1, List.of(h.b.sge(0, 16)), SIGNALED, 0x1000, 0x77));
            assertTrue(cb.awaitingRtr());
            assertFalse(cb.isEstablished(), "the TX thread leaves the stream alone until the RTR came");
            assertNull(h.b.events.peek(), "no ESTABLISHED before the RTR");

            byte[] rtr = new byte[Mpa.fpduLength(Iwarp.TAGGED_HDR)];
            Iwarp.tagged(ByteBuffer.wrap(rtr, 2, Iwarp.TAGGED_HDR), Iwarp.OP_WRITE, true, 1, 0);
            Mpa.seal(ByteBuffer.wrap(rtr), 0, Iwarp.TAGGED_HDR);
            s.getOutputStream().write(rtr);
            SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);
            byte[] fpdu = new byte[Mpa.fpduLength(Iwarp.TAGGED_HDR + 16)];
            in.readFully(fpdu);
            assertEquals(Iwarp.TAGGED_HDR + 16, ((fpdu[0] & 0xff) << 8) | (fpdu[1] & 0xff), "the WRITE went out");
        }
    }

    @Test
    void v2PrivateDataLimitsAndRevisionSettingsAreChecked() {
        QueuePair qa = h.a.rc();
        InetSocketAddress to = new InetSocketAddress(h.b.address, 1);
        ErrnoException big = assertThrows(ErrnoException.class, () -> h.a.cm.connect(qa.qpNum(), to,
                new IwConnParam(new byte[509], 1, 1), h.a.events::add));
        assertEquals(Errno.EINVAL, big.errno());
        assertTrue(big.getMessage().contains("509"), big.getMessage());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> pa().mpa(3, false)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> pa().mpa(1, true)).errno());
        assertEquals(Mpa.REVISION_2, pa().mpaRevision(), "a refused setting changes nothing");
        assertEquals(QpState.INIT, qa.query().qpState(), "IDLE (siw ignored the RTR), INIT to siw_query_qp");
        assertNull(h.a.events.peek());
    }

    private static int read(InputStream in) throws IOException {
        return in.read();
    }
}
