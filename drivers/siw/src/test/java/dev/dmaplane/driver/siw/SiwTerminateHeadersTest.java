package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.spi.PcapFile;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.DataInputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The TERMINATE carries the headers of the segment that failed, as {@code siw_send_terminate}
 * ({@code drivers/infiniband/sw/siw/siw_qp.c}) copies them after {@code struct iwarp_terminate} and RFC 5040 section
 * 8 lays them out: the header-control bits M (DDP Segment Length valid), D (Terminated DDP Header), R (Terminated
 * RDMA Header), then the DDP Segment Length where the failed FPDU had its MPA length (siw writes the ULPDU length less
 * the headers of the segment's opcode, {@code iwarp_pktinfo[op].hdr_len - MPA_HDR_SIZE}), then the DDP header (14
 * bytes tagged, 18 untagged, by the segment's T flag), and for a Remote Protection Error the RDMAP header too; none
 * for the LLP layer. Each case from a raw initiator, the TERMINATE compared byte for byte with one built here from
 * those rules, then the conversation (MPA request and reply, the peer's FPDU, siw's TERMINATE, each as sent) written
 * to a capture file and decoded by Wireshark's {@code iwarp_ddp_rdmap} dissector through {@code tshark}, where
 * tshark is on the PATH (required when {@code -Ddmaplane.require.tools} names it).
 */
@Timeout(60)
class SiwTerminateHeadersTest {
    /** tshark's fields of a TERMINATE: the layer, its error type and code by layer, M, D, R, the copied headers. */
    private static final List<String> FIELDS = List.of("_ws.malformed", "iwarp_rdma.term_layer",
            "iwarp_rdma.term_etype_rdma", "iwarp_rdma.term_etype_ddp", "iwarp_rdma.term_etype_llp",
            "iwarp_rdma.term_errcode_rdma", "iwarp_rdma.term_errcode_ddp_tagged",
            "iwarp_rdma.term_errcode_ddp_untagged", "iwarp_rdma.term_errcode_llp", "iwarp_rdma.term_hdrct_m",
            "iwarp_rdma.hdrct_d", "iwarp_rdma.hdrct_r", "iwarp_rdma.term_ddp_seg_len", "iwarp_rdma.term_ddp_h",
            "iwarp_rdma.term_rdma_h");

    private final SiwHosts h = new SiwHosts(65, 66);

    @TempDir
    Path dir;

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    /** A raw initiator's stream to b's QP {@code qb}, with the MPA request and reply as they went. */
    private record Peer(Socket s, DataInputStream in, byte[] request, byte[] reply) implements AutoCloseable {
        @Override
        public void close() throws IOException {
            s.close();
        }
    }

    private Peer connect(QueuePair qb, IwListen l) throws IOException {
        Socket s = new Socket();
        s.connect(l.local(), 10_000);
        s.setSoTimeout(10_000);
        byte[] req = Mpa.frame(false, false, Mpa.REVISION_1, null, new byte[0]);
        s.getOutputStream().write(req);
        SiwHosts.expect(h.b.event(), IwCmEvent.Type.CONNECT_REQUEST).request()
                .accept(qb.qpNum(), new IwConnParam(null, 1, 1), h.b.events::add);
        SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);
        DataInputStream in = new DataInputStream(s.getInputStream());
        byte[] rep = new byte[Mpa.RR_HDR];
        in.readFully(rep);
        return new Peer(s, in, req, rep);
    }

    private IwListen listen() {
        return h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
    }

    /** The next FPDU siw sends, whole. */
    private static byte[] nextFpdu(DataInputStream in) throws IOException {
        int len = in.readUnsignedShort();
        byte[] f = new byte[Mpa.fpduLength(len)];
        f[0] = (byte) (len >>> 8);
        f[1] = (byte) len;
        in.readFully(f, 2, f.length - 2);
        return f;
    }

    /**
     * A TERMINATE as RFC 5040 section 8 and {@code siw_send_terminate} lay it out, built here field by field: MPA
     * length, DDP control (untagged, last, version 1), RDMAP control (version 1, opcode 7), the Invalidate STag slot
     * 0, queue 2, MSN 1, MO 0, the control word {@code word}, the copied headers, the CRC32C.
     */
    private static byte[] terminate(int word, byte[] copied) {
        int ulpdu = 22 + copied.length;
        ByteBuffer f = ByteBuffer.allocate(2 + ulpdu + 4);
        f.putShort((short) ulpdu).put((byte) 0x41).put((byte) 0x47).putInt(0).putInt(2).putInt(1).putInt(0)
                .putInt(word).put(copied);
        Mpa.seal(f, 0, ulpdu);
        return f.array();
    }

    static String hex(byte[] b, int off, int len) {
        StringBuilder s = new StringBuilder();
        for (int i = off; i < off + len; i++) {
            s.append(String.format("%02x", b[i] & 0xff));
        }
        return s.toString();
    }

    private String decode(Peer p, byte[] sent, byte[] term) throws Exception {
        return decode(dir.resolve("terminate.pcap"), p.s, p.request, p.reply, sent, term);
    }

    /**
     * The conversation of a raw initiator's socket {@code s} as a capture in {@code file}: the handshake, the peer's
     * MPA request, siw's reply, the peer's FPDUs {@code sent}, siw's TERMINATE, then tshark's fields of the TERMINATE
     * ({@link #FIELDS}, "|"-separated), its CRC checked good.
     */
    static String decode(Path file, Socket s, byte[] request, byte[] reply, byte[] sent, byte[] term)
            throws Exception {
        ExternalTool tshark = SiwHosts.tshark();
        InetSocketAddress peer = (InetSocketAddress) s.getLocalSocketAddress();
        InetSocketAddress siw = (InetSocketAddress) s.getRemoteSocketAddress();
        long ip = TcpCapture.isn(peer, siw);
        long is = TcpCapture.isn(siw, peer);
        try (TcpCapture cap = TcpCapture.of(PcapFile.open(file, "siw"))) {
            byte[] none = new byte[0];
            cap.segment(peer, siw, ip, 0, TcpCapture.SYN, none, 0, 0);
            cap.segment(siw, peer, is, ip + 1, TcpCapture.SYN | TcpCapture.ACK, none, 0, 0);
            cap.segment(peer, siw, ip + 1, is + 1, TcpCapture.ACK, none, 0, 0);
            long sp = ip + 1;
            long ss = is + 1;
            int flags = TcpCapture.PSH | TcpCapture.ACK;
            cap.segment(peer, siw, sp, ss, flags, request, 0, request.length);
            sp += request.length;
            cap.segment(siw, peer, ss, sp, flags, reply, 0, reply.length);
            ss += reply.length;
            cap.segment(peer, siw, sp, ss, flags, sent, 0, sent.length);
            sp += sent.length;
            cap.segment(siw, peer, ss, sp, flags, term, 0, term.length);
        }
        String verbose = tshark.run(Duration.ofSeconds(60), "-r", file.toString(), "-Y", "iwarp_rdma.opcode == 7",
                "-V");
        assertTrue(verbose.contains("(Good CRC32)"), verbose);
        String[] args = new String[8 + 2 * FIELDS.size()];
        int i = 0;
        for (String a : List.of("-r", file.toString(), "-Y", "iwarp_rdma.opcode == 7", "-T", "fields", "-E",
                "separator=|")) {
            args[i++] = a;
        }
        for (String f : FIELDS) {
            args[i++] = "-e";
            args[i++] = f;
        }
        List<String> rows = tshark.run(Duration.ofSeconds(60), args).lines().filter(x -> !x.isBlank()).toList();
        assertEquals(1, rows.size(), rows.toString());
        return rows.getFirst();
    }

    /**
     * DDP layer, Tagged Buffer Error, Invalid STag for an RDMA WRITE to an STag that names nothing
     * ({@code siw_proc_write}): M and D, the DDP Segment Length (the 100 bytes of payload) and the 14-byte tagged DDP
     * header of the WRITE ({@code sizeof(struct iwarp_ctrl_tagged)} with the length in front).
     */
    @Test
    void aTaggedErrorCarriesTheTaggedDdpHeader() throws Exception {
        QueuePair qb = h.b.rc();
        int stag = 0x00ab_cd01;
        try (IwListen l = listen(); Peer p = connect(qb, l)) {
            byte[] write = SiwRxPlacementTest.write(true, stag, 0x1000, SiwHosts.random(100, 1));
            p.s.getOutputStream().write(write);
            byte[] got = nextFpdu(p.in);
            byte[] copied = ByteBuffer.allocate(16).putShort((short) 100).put((byte) 0xc1).put((byte) 0x40)
                    .putInt(stag).putLong(0x1000).array();
            assertArrayEquals(terminate(0x1100_c000, copied), got);
            SiwTerminateTest.closedAfterItsTerminate(h.b, qb);
            assertEquals("|0x01||0x01|||0x00|||1|1|0|0064|" + hex(write, 2, 14) + "|", decode(p, write, got));
        }
    }

    /**
     * DDP layer, Untagged Buffer Error, no buffer for a SEND with no receive posted ({@code siw_proc_send}): M and D,
     * the DDP Segment Length (64) and the 18-byte untagged DDP header of the SEND
     * ({@code sizeof(struct iwarp_ctrl_untagged)} with the length in front).
     */
    @Test
    void anUntaggedErrorCarriesTheUntaggedDdpHeader() throws Exception {
        QueuePair qb = h.b.rc();
        try (IwListen l = listen(); Peer p = connect(qb, l)) {
            byte[] send = SiwRxPlacementTest.send(true, 1, 0, SiwHosts.random(64, 2));
            p.s.getOutputStream().write(send);
            byte[] got = nextFpdu(p.in);
            byte[] copied = ByteBuffer.allocate(20).putShort((short) 64).put((byte) 0x41).put((byte) 0x43)
                    .putInt(0).putInt(0).putInt(1).putInt(0).array();
            assertArrayEquals(terminate(0x1202_c000, copied), got);
            SiwTerminateTest.closedAfterItsTerminate(h.b, qb);
            assertEquals("|0x01||0x02||||0x02||1|1|0|0040|" + hex(send, 2, 18) + "|", decode(p, send, got));
        }
    }

    /**
     * RDMAP layer, Remote Operation Error, Cannot Invalidate for a SEND with Invalidate naming an STag of no region
     * ({@code siw_rdmap_complete}, {@code siw_invalidate_stag}): an RDMAP error other than Invalid Version or
     * Unexpected Opcode attaches the DDP header only ("Only DDP frame will get attached"): M and D, the DDP Segment
     * Length (32) and the SEND's 18-byte header with the STag it named. siw holds this TERMINATE until the connection
     * is dropped (here by a modify to ERR); its headers are those of the SEND that set it up.
     */
    @Test
    void anRdmapRemoteOperationErrorCarriesTheDdpHeader() throws Exception {
        QueuePair qb = h.b.rc();
        qb.postRecv(List.of(RecvWr.of(1, h.b.sge(0, 4096))));
        int inv = 0x0077_7701;
        try (IwListen l = listen(); Peer p = connect(qb, l)) {
            int ulpdu = Iwarp.UNTAGGED_HDR + 32;
            ByteBuffer f = ByteBuffer.allocate(Mpa.fpduLength(ulpdu));
            ByteBuffer b = f.slice(2, ulpdu);
            Iwarp.untagged(b, Iwarp.OP_SEND_INV, true, inv, Iwarp.QN_SEND, 1, 0);
            b.put(SiwHosts.random(32, 3));
            Mpa.seal(f, 0, ulpdu);
            byte[] send = f.array();
            p.s.getOutputStream().write(send);
            assertEquals(WcStatus.REM_INV_REQ_ERR, SiwHosts.one(h.b.cq).status());
            qb.modify(QpAttr.builder().state(QpState.ERR).build()); // the drop sends the TERMINATE held since
            byte[] got = nextFpdu(p.in);
            byte[] copied = ByteBuffer.allocate(20).putShort((short) 32).put((byte) 0x41).put((byte) 0x44)
                    .putInt(inv).putInt(0).putInt(1).putInt(0).array();
            assertArrayEquals(terminate(0x0209_c000, copied), got);
            SiwTerminateTest.closedAfterItsTerminate(h.b, qb);
            assertEquals("|0x00|0x02|||0x09||||1|1|0|0020|" + hex(send, 2, 18) + "|", decode(p, send, got));
        }
    }

    /**
     * LLP layer, MPA, CRC error ({@code siw_get_trailer}): no header attached, no header-control bit set, the
     * TERMINATE its 28 bytes.
     */
    @Test
    void anLlpErrorCarriesNoHeader() throws Exception {
        QueuePair qb = h.b.rc();
        qb.postRecv(List.of(RecvWr.of(1, h.b.sge(0, 4096))));
        try (IwListen l = listen(); Peer p = connect(qb, l)) {
            byte[] send = SiwRxPlacementTest.send(true, 1, 0, SiwHosts.random(64, 4));
            send[send.length - 1] ^= 0x5a;
            p.s.getOutputStream().write(send);
            byte[] got = nextFpdu(p.in);
            assertArrayEquals(terminate(0x2002_0000, new byte[0]), got);
            SiwTerminateTest.closedAfterItsTerminate(h.b, qb);
            assertEquals("|0x02|||0x00||||0x02|0|0|0|||", decode(p, send, got));
        }
    }

    /**
     * RDMAP layer, Remote Protection Error, Invalid STag for a READ request whose source names nothing, found while
     * the response is built ({@code in_tx}): {@code siw_send_terminate} rebuilds the whole Read Request from the
     * response it was building and sets M, D and R: the DDP Segment Length 0 (the MPA length of
     * {@code iwarp_pktinfo[RDMAP_RDMA_READ_REQ]} less the request's headers), the control bytes of a Read Request,
     * queue 1, the read size in the MSN field (siw writes {@code wqe->sqe.sge[0].length} there), the message offset 0
     * (nothing sent yet), then sink STag and offset, size, source STag and offset as the request named them. Byte for
     * byte only: Wireshark reads the headers of an error of type 1 as a tagged DDP header, whatever the layer.
     */
    @Test
    void aRefusedReadSourceCarriesTheRebuiltReadRequest() throws Exception {
        QueuePair qb = h.b.rc();
        int src = 0x0055_5501;
        try (IwListen l = listen(); Peer p = connect(qb, l)) {
            ByteBuffer body = ByteBuffer.allocate(Iwarp.READ_REQUEST_BODY);
            Iwarp.readRequest(body, 0x22, 0x3000, 4096, src, 0x40);
            int ulpdu = Iwarp.UNTAGGED_HDR + Iwarp.READ_REQUEST_BODY;
            ByteBuffer f = ByteBuffer.allocate(Mpa.fpduLength(ulpdu));
            ByteBuffer b = f.slice(2, ulpdu);
            Iwarp.untagged(b, Iwarp.OP_READ_REQUEST, true, 0, Iwarp.QN_READ_REQUEST, 1, 0);
            b.put(body.array());
            Mpa.seal(f, 0, ulpdu);
            p.s.getOutputStream().write(f.array());
            byte[] got = nextFpdu(p.in);
            byte[] copied = ByteBuffer.allocate(48).putShort((short) 0).put((byte) 0x41).put((byte) 0x41)
                    .putInt(0).putInt(1).putInt(4096).putInt(0).putInt(0x22).putLong(0x3000).putInt(4096)
                    .putInt(src).putLong(0x40).array();
            assertArrayEquals(terminate(0x0100_e000, copied), got);
            assertEquals(EventType.QP_REQ_ERR, h.b.asyncEvent().type());
        }
    }
}
