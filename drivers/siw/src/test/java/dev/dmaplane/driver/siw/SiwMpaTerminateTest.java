package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.DataInputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The errors of RFC 6581's enhanced connection establishment that the initiator reports with a TERMINATE of the
 * LLP (MPA) layer, as {@code siw_proc_mpareply} does: a reply whose ORD exceeds what the initiator's IRD can take
 * (relaxed IRD negotiation: beyond the device's IRD; {@code LLP_ECODE_INSUFFICIENT_IRD}, 0x06) and a reply that
 * picked no RTR message the initiator offered ({@code LLP_ECODE_NO_MATCHING_RTR}, 0x07). The TERMINATE
 * ({@code siw_init_terminate}, {@code siw_send_terminate}; RFC 5040 section 4.8) is the only FPDU after the reply:
 * untagged, queue 2, MSN 1, MO 0, layer 2, type 0, no header of a failed frame; the stream is then closed, the
 * initiator's CONNECT_REPLY carries {@code EINVAL} ({@code out_err}) with the depths the peer sent, and its QP
 * ends in ERR ({@code siw_qp_llp_close}). A responder that gets it ({@code siw_proc_terminate}) ends its QP in ERR
 * and reports the connection closed. The peers that send such replies are raw sockets: siw itself never does.
 */
@Timeout(60)
class SiwMpaTerminateTest {
    private static final int TERMINATE_FPDU = Mpa.fpduLength(Iwarp.UNTAGGED_HDR + Iwarp.TERMINATE_BODY);

    private final SiwHosts h = new SiwHosts(55, 56);

    @TempDir
    Path dir;

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    private SiwProvider pa() {
        return h.da.providers.get("siw0");
    }

    /**
     * The TERMINATE FPDU {@code f} as RFC 5040 section 4.8 lays it out, checked; its control word decoded (the copied
     * headers of a failed segment, which come with the M flag, are checked by {@code SiwTerminateHeadersTest}).
     */
    static Terminate terminate(byte[] f) {
        ByteBuffer b = ByteBuffer.wrap(f);
        int ulpdu = b.getShort(0) & 0xffff;
        boolean copied = (b.getInt(2 + Iwarp.UNTAGGED_HDR) & Terminate.FLAG_M) != 0;
        assertEquals(copied, ulpdu > Iwarp.UNTAGGED_HDR + Iwarp.TERMINATE_BODY,
                "the control word, failed headers only with the M flag: " + ulpdu);
        assertTrue(Mpa.crcOk(b, 0, f.length), "a good CRC32C");
        Iwarp.Segment s = Iwarp.parse(b, 2, ulpdu);
        assertFalse(s.tagged());
        assertTrue(s.last());
        assertEquals(List.of(Iwarp.OP_TERMINATE, Iwarp.QN_TERMINATE, 1, 0), List.of(s.opcode(), s.qn(), s.msn(),
                s.mo()), "opcode, queue, MSN, MO");
        return Terminate.of(b.getInt(s.payloadAt()));
    }

    @Test
    void aReplyWithAnOrdBeyondTheIrdIsTerminatedWithInsufficientIrd() throws Exception {
        QueuePair qa = h.a.rc();
        // ORD 129: above the 128 READs siw's IRD can ever serve (relaxed_ird_negotiation grows it up to there)
        byte[] after = h.respondRaw(qa, new IwConnParam(null, 8, 8),
                Mpa.frame(true, false, Mpa.REVISION_2, new Mpa.V2(4, 129, false, 0), new byte[0]));
        assertEquals(TERMINATE_FPDU, after.length, "the TERMINATE and nothing else");
        assertEquals(new Terminate(Terminate.LAYER_LLP, Terminate.LLP_MPA, Terminate.LLP_INSUFFICIENT_IRD),
                terminate(after));

        IwCmEvent e = h.a.event();
        assertEquals(IwCmEvent.Type.CONNECT_REPLY, e.type());
        assertEquals(Errno.EINVAL, e.status(), "siw_proc_mpareply's out_err");
        assertEquals(List.of(4, 129), List.of(e.ord(), e.ird()),
                "cep->ord = rep_ird, cep->ird = rep_ord: as negotiated, reported even so");
        assertEquals(QpState.ERR, qa.query().qpState(), "the endpoint's release moved the QP to ERR");
        assertEquals(1, SiwHosts.counter(h.da, "dmaplane_terminate_sent"));
        assertNull(h.a.events.peek(), "nothing after CONNECT_REPLY: the connection never was");
    }

    @Test
    void aReplyPickingNoOfferedRtrIsTerminatedWithNoMatchingRtr() throws Exception {
        pa().mpa(Mpa.REVISION_2, true);
        QueuePair qa = h.a.rc();
        // siw offers the zero-length WRITE; the peer picks the READ
        byte[] after = h.respondRaw(qa, new IwConnParam(null, 4, 4),
                Mpa.frame(true, false, Mpa.REVISION_2, new Mpa.V2(4, 4, true, Mpa.V2_READ_RTR), new byte[0]));
        assertEquals(new Terminate(Terminate.LAYER_LLP, Terminate.LLP_MPA, Terminate.LLP_NO_MATCHING_RTR),
                terminate(after), "and no RTR message before it");
        assertEquals(TERMINATE_FPDU, after.length);
        IwCmEvent e = h.a.event();
        assertEquals(List.of(IwCmEvent.Type.CONNECT_REPLY, Errno.EINVAL), List.of(e.type(), e.status()));
        assertEquals(QpState.ERR, qa.query().qpState());
    }

    /**
     * The responder's view ({@code siw_proc_terminate}): it accepted a peer-to-peer request, sent its reply and waits
     * for the RTR message; the TERMINATE comes instead. {@code siw_rtr_data_ready} finds the receive suspended and
     * reports no ESTABLISHED; the TERMINATE's {@code -ECONNRESET} drops the connection ({@code siw_qp_cm_drop}):
     * CLOSE alone, no DISCONNECT ({@code SIW_CM_WORK_CLOSE_LLP}), no async event, the QP in ERR with its receive
     * flushed ({@code siw_qp_llp_close}, {@code siw_rq_flush}).
     */
    @Test
    void aResponderThatGetsTheTerminateInsteadOfTheRtrEndsTheConnection() throws Exception {
        QueuePair qb = h.b.rc();
        qb.postRecv(List.of(RecvWr.of(9, h.b.sge(0, 64))));
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = new Socket()) {
            s.connect(l.local(), 10_000);
            s.setSoTimeout(10_000);
            s.getOutputStream().write(Mpa.frame(false, false, Mpa.REVISION_2,
                    new Mpa.V2(4, 4, true, Mpa.V2_READ_RTR), new byte[0]));
            IwCmEvent req = h.b.event();
            req.request().accept(qb.qpNum(), new IwConnParam(null, 4, 4), h.b.events::add);
            DataInputStream in = new DataInputStream(s.getInputStream());
            in.readFully(new byte[Mpa.RR_HDR + Mpa.V2_DATA]);
            s.getOutputStream().write(new Terminate(Terminate.LAYER_LLP, Terminate.LLP_MPA,
                    Terminate.LLP_NO_MATCHING_RTR).fpdu());
            SiwTerminateTest.closedByTerminate(h.b, qb);
            WorkCompletion w = SiwHosts.one(h.b.cq);
            assertEquals(List.of(9L, WcStatus.WR_FLUSH_ERR), List.of(w.wrId(), w.status()), w.toString());
            assertEquals(1, SiwHosts.counter(h.db, "dmaplane_terminate_received"));
            assertEquals(-1, in.read(), "the responder closed its end");
        }
    }

    /**
     * The capture of an insufficient IRD: Wireshark (4.0 predates RFC 6581: revision 2 is a warning there) decodes
     * the request, the reply and the TERMINATE with a good CRC, layer LLP, error type MPA, code 0x06, and finds no
     * malformed frame.
     */
    @Test
    void tsharkDecodesTheTerminateAfterTheReply() throws Exception {
        ExternalTool tshark = SiwHosts.tshark();
        Path file = dir.resolve("siw-ird.pcap");
        assertTrue(h.da.pcap(file.toString()).startsWith("capturing to "));
        QueuePair qa = h.a.rc();
        h.respondRaw(qa, new IwConnParam(null, 8, 8),
                Mpa.frame(true, false, Mpa.REVISION_2, new Mpa.V2(4, 129, false, 0), new byte[0]));
        assertEquals(Errno.EINVAL, h.a.event().status());
        assertTrue(h.da.pcap("off").contains("closed"));

        String out = tshark.run(Duration.ofSeconds(60), "-r", file.toString(), "-T", "fields", "-E", "separator=|",
                "-e", "frame.number", "-e", "_ws.malformed", "-e", "iwarp_mpa.key.req", "-e", "iwarp_mpa.key.rep",
                "-e", "iwarp_ddp.qn", "-e", "iwarp_ddp.msn", "-e", "iwarp_rdma.opcode", "-e", "iwarp_rdma.term_layer",
                "-e", "iwarp_rdma.term_etype_llp", "-e", "iwarp_rdma.term_errcode_llp");
        List<String[]> rows = out.lines().filter(x -> !x.isBlank()).map(x -> x.split("\\|", -1)).toList();
        assertTrue(rows.stream().allMatch(r -> r[1].isEmpty()), "no malformed frame:\n" + out);
        assertEquals(1, rows.stream().filter(r -> !r[2].isEmpty()).count(), "the request:\n" + out);
        assertEquals(1, rows.stream().filter(r -> !r[3].isEmpty()).count(), "the reply:\n" + out);
        List<String[]> term = rows.stream().filter(r -> r[6].equals("0x07")).toList();
        assertEquals(1, term.size(), out);
        assertEquals(List.of("2", "1", "0x02", "0x00", "0x06"), List.of(term.getFirst()[4], term.getFirst()[5],
                term.getFirst()[7], term.getFirst()[8], term.getFirst()[9]), out);
        String verbose = tshark.run(Duration.ofSeconds(60), "-r", file.toString(), "-V");
        assertEquals(1, verbose.lines().filter(x -> x.contains("(Good CRC32)")).count(), verbose);
    }
}
