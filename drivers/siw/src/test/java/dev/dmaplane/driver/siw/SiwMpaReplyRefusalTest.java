package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.DataInputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The MPA replies the initiator refuses before RFC 6581's negotiation, each as {@code siw_proc_mpareply}
 * ({@code drivers/infiniband/sw/siw/siw_cm.c}) does it, in its order: a reply {@code siw_recv_mpa_rr} cannot read
 * (a private data length over {@code MPA_MAX_PRIVDATA}, 512: {@code -EPROTO}) and a revision above 2 ("allow for
 * 0, 1, and 2 only": {@code -EPROTO}) go to {@code out_err} without a word on the wire; a wrong key sends a TERMINATE
 * of the LLP layer, type MPA, code {@code LLP_ECODE_INVALID_REQ_RESP} (0x04, {@code iwarp.h}) first, then goes to
 * {@code out_err}; {@code out_err} reports CONNECT_REPLY with {@code -EINVAL}. A reply asking for markers is refused
 * with CONNECT_REPLY {@code -ECONNREFUSED} and no TERMINATE; a revision 2 reply without the enhanced flag, and a
 * peer that closes the stream in the middle of its reply, with {@code -ECONNRESET}. In every case
 * {@code siw_cm_work_handler} releases the endpoint ({@code release_cep}): the stream is closed and
 * {@code siw_qp_llp_close} moves the QP to ERR. The peers are raw sockets answering siw's revision 2 request.
 */
@Timeout(60)
class SiwMpaReplyRefusalTest {
    private static final int TERMINATE_FPDU = Mpa.fpduLength(Iwarp.UNTAGGED_HDR + Iwarp.TERMINATE_BODY);

    private final SiwHosts h = new SiwHosts(57, 58);

    @TempDir
    Path dir;

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    private long terminatesSent() {
        return SiwHosts.counter(h.da, "dmaplane_terminate_sent");
    }

    /** A good revision 2 reply (IRD and ORD 4) with its key, flags and revision replaced as given. */
    private static byte[] reply(byte[] key, int flags, int revision) {
        byte[] f = Mpa.frame(true, false, Mpa.REVISION_2, new Mpa.V2(4, 4, false, 0), new byte[0]);
        System.arraycopy(key, 0, f, 0, 16);
        f[16] = (byte) flags;
        f[17] = (byte) revision;
        return f;
    }

    private IwCmEvent refused(QueuePair qa, Errno status) {
        IwCmEvent e = h.a.event();
        assertEquals(List.of(IwCmEvent.Type.CONNECT_REPLY, status), List.of(e.type(), e.status()));
        assertEquals(QpState.ERR, qa.query().qpState(), "the endpoint's release moved the QP to ERR");
        assertNull(h.a.events.peek(), "nothing after CONNECT_REPLY: the connection never was");
        return e;
    }

    /**
     * {@code siw_proc_mpareply}: {@code memcmp(rep->key, MPA_KEY_REP, 16)} fails, {@code siw_init_terminate(qp,
     * TERM_ERROR_LAYER_LLP, LLP_ETYPE_MPA, LLP_ECODE_INVALID_REQ_RESP, 0)}, {@code siw_send_terminate}, {@code out_err}
     * with {@code -EINVAL}. Here the responder echoes the request's key.
     */
    @Test
    void aReplyWithTheWrongKeyIsTerminatedWithInvalidRequestResponse() throws Exception {
        QueuePair qa = h.a.rc();
        byte[] after = h.respondRaw(qa, new IwConnParam(null, 4, 4),
                reply(Mpa.REQ_KEY, Mpa.FLAG_CRC | Mpa.FLAG_ENHANCED, Mpa.REVISION_2));
        assertEquals(TERMINATE_FPDU, after.length, "the TERMINATE and nothing else");
        assertEquals(new Terminate(Terminate.LAYER_LLP, Terminate.LLP_MPA, Terminate.LLP_INVALID_REQ_RESP),
                SiwMpaTerminateTest.terminate(after));
        assertEquals(2 << 28 | 0x04 << 16, ByteBuffer.wrap(after).getInt(2 + Iwarp.UNTAGGED_HDR),
                "layer 2, type 0, code 0x04, no header of a failed frame");
        refused(qa, Errno.EINVAL);
        assertEquals(1, terminatesSent());
    }

    /** {@code __mpa_rr_revision(rep->params.bits) > MPA_REVISION_2}: {@code -EPROTO} to {@code out_err}, no TERMINATE. */
    @Test
    void aReplyOfRevisionThreeClosesTheStreamWithEinval() throws Exception {
        QueuePair qa = h.a.rc();
        byte[] after = h.respondRaw(qa, new IwConnParam(null, 4, 4),
                reply(Mpa.REP_KEY, Mpa.FLAG_CRC | Mpa.FLAG_ENHANCED, 3));
        assertArrayEquals(new byte[0], after, "the stream closed without a TERMINATE");
        refused(qa, Errno.EINVAL);
        assertEquals(0, terminatesSent());
    }

    /**
     * The revision is checked before the key: a reply of revision 3 with the request's key is closed without a
     * TERMINATE.
     */
    @Test
    void theRevisionIsJudgedBeforeTheKey() throws Exception {
        QueuePair qa = h.a.rc();
        byte[] after = h.respondRaw(qa, new IwConnParam(null, 4, 4), reply(Mpa.REQ_KEY, Mpa.FLAG_CRC, 3));
        assertArrayEquals(new byte[0], after);
        refused(qa, Errno.EINVAL);
        assertEquals(0, terminatesSent());
    }

    /**
     * {@code siw_recv_mpa_rr}: a private data length over {@code MPA_MAX_PRIVDATA} is {@code -EPROTO} once the header
     * is in, before any private data is read or the key looked at; {@code out_err}, no TERMINATE.
     */
    @Test
    void aReplyWithPrivateDataOverTheLimitClosesTheStreamWithEinval() throws Exception {
        QueuePair qa = h.a.rc();
        ByteBuffer rep = ByteBuffer.allocate(Mpa.RR_HDR);
        rep.put("MPA ID Bad Frame".getBytes(StandardCharsets.US_ASCII)).put((byte) Mpa.FLAG_CRC)
                .put((byte) Mpa.REVISION_2).putShort((short) (Mpa.MAX_PRIVATE_DATA + 1));
        byte[] after = h.respondRaw(qa, new IwConnParam(null, 4, 4), rep.array());
        assertArrayEquals(new byte[0], after, "no TERMINATE, not even for the wrong key behind the length");
        refused(qa, Errno.EINVAL);
        assertEquals(0, terminatesSent());
    }

    /**
     * {@code rep->params.bits & MPA_RR_FLAG_MARKERS}: CONNECT_REPLY with {@code -ECONNREFUSED} (the function returns
     * {@code -EINVAL} without {@code out_err}'s second report), no TERMINATE.
     */
    @Test
    void aReplyAskingForMarkersIsRefusedWithEconnrefused() throws Exception {
        QueuePair qa = h.a.rc();
        byte[] after = h.respondRaw(qa, new IwConnParam(null, 4, 4),
                reply(Mpa.REP_KEY, Mpa.FLAG_MARKERS | Mpa.FLAG_CRC | Mpa.FLAG_ENHANCED, Mpa.REVISION_2));
        assertArrayEquals(new byte[0], after);
        refused(qa, Errno.ECONNREFUSED);
        assertEquals(0, terminatesSent());
    }

    /**
     * {@code siw_proc_mpareply} with {@code enhanced_rdma_conn_est}: a reply of revision 2 without
     * {@code MPA_RR_FLAG_ENHANCED}, or of revision 1, is a protocol failure ("the responder MUST reply with MPA
     * version 2 and MUST set MPA_RR_FLAG_ENHANCED"): CONNECT_REPLY {@code -ECONNRESET}, no TERMINATE, and the
     * {@code -EINVAL} it returns makes {@code siw_cm_work_handler} release the endpoint, moving the QP to ERR.
     */
    @Test
    void aV2ReplyWithoutTheEnhancedFlagIsEconnresetAndTheQpInErr() throws Exception {
        QueuePair qa = h.a.rc();
        byte[] after = h.respondRaw(qa, new IwConnParam(null, 4, 4), reply(Mpa.REP_KEY, Mpa.FLAG_CRC,
                Mpa.REVISION_2));
        assertArrayEquals(new byte[0], after, "the stream closed without a TERMINATE");
        refused(qa, Errno.ECONNRESET);

        QueuePair qa1 = h.a.rc();
        byte[] v1 = Mpa.frame(true, false, Mpa.REVISION_1, null, new byte[0]);
        assertArrayEquals(new byte[0], h.respondRaw(qa1, new IwConnParam(null, 4, 4), v1));
        refused(qa1, Errno.ECONNRESET);
        assertEquals(0, terminatesSent());
    }

    /**
     * {@code siw_proc_mpareply} judges the reject bit before it reads the IRD/ORD words: a rejecting revision 2 reply
     * with the H flag and 2 bytes of private data, too few for the words, is a reject all the same (CONNECT_REPLY
     * {@code -ECONNRESET}, the QP in ERR), with none of the consumer's private data.
     */
    @Test
    void aRejectTooShortForIrdAndOrdIsStillAReject() throws Exception {
        QueuePair qa = h.a.rc();
        byte[] rep = Mpa.frame(true, true, Mpa.REVISION_2, null, new byte[]{7, 7});
        rep[16] |= (byte) Mpa.FLAG_ENHANCED;
        assertArrayEquals(new byte[0], h.respondRaw(qa, new IwConnParam(null, 4, 4), rep), "no TERMINATE");
        IwCmEvent e = h.a.event();
        assertEquals(List.of(IwCmEvent.Type.CONNECT_REPLY, Errno.ECONNRESET), List.of(e.type(), e.status()));
        assertArrayEquals(new byte[0], e.privateData());
        assertEquals(QpState.ERR, qa.query().qpState());
    }

    /**
     * A responder that closes its stream in the middle of the reply: {@code siw_recv_mpa_rr} has only part of the
     * header ({@code -EAGAIN}), then {@code siw_cm_llp_state_change} queues PEER_CLOSE, and
     * {@code siw_cm_work_handler} in {@code SIW_EPSTATE_AWAIT_MPAREP} reports CONNECT_REPLY {@code -ECONNRESET}
     * ("MPA reply not received, but connection drop") and releases the endpoint: the QP is in ERR.
     */
    @Test
    void aPeerClosingInTheMiddleOfTheReplyIsEconnresetAndTheQpInErr() throws Exception {
        QueuePair qa = h.a.rc();
        byte[] part = Arrays.copyOf(reply(Mpa.REP_KEY, Mpa.FLAG_CRC | Mpa.FLAG_ENHANCED, Mpa.REVISION_2), 10);
        try (ServerSocket server = new ServerSocket(0, 1, h.b.address)) {
            h.a.cm.connect(qa.qpNum(), (InetSocketAddress) server.getLocalSocketAddress(), new IwConnParam(null, 4, 4),
                    h.a.events::add);
            try (Socket s = server.accept()) {
                s.setSoTimeout((int) SiwHosts.WAIT.toMillis());
                new DataInputStream(s.getInputStream()).readFully(new byte[Mpa.RR_HDR + Mpa.V2_DATA]);
                s.getOutputStream().write(part);
                s.shutdownOutput();
                assertArrayEquals(new byte[0], s.getInputStream().readAllBytes(), "siw closes without a word");
            }
        }
        refused(qa, Errno.ECONNRESET);
        assertEquals(0, terminatesSent());
    }

    /**
     * The capture of a wrong key: Wireshark (4.0) takes the reply carrying the request's key for a second request, so
     * it never sees the start of full operation and shows the TERMINATE as undecoded data; that data is the FPDU siw
     * sent (control word {@code 0x20040000}), the capture holds no malformed frame.
     */
    @Test
    void tsharkShowsTheTerminateAfterAReplyWithTheRequestsKey() throws Exception {
        ExternalTool tshark = SiwHosts.tshark();
        Path file = dir.resolve("siw-key.pcap");
        assertTrue(h.da.pcap(file.toString()).startsWith("capturing to "));
        QueuePair qa = h.a.rc();
        byte[] after = h.respondRaw(qa, new IwConnParam(null, 4, 4),
                reply(Mpa.REQ_KEY, Mpa.FLAG_CRC | Mpa.FLAG_ENHANCED, Mpa.REVISION_2));
        assertEquals(Errno.EINVAL, h.a.event().status());
        assertTrue(h.da.pcap("off").contains("closed"));

        String out = tshark.run(Duration.ofSeconds(60), "-r", file.toString(), "-T", "fields", "-E", "separator=|",
                "-e", "frame.number", "-e", "_ws.malformed", "-e", "iwarp_mpa.key.req", "-e", "data.data");
        List<String[]> rows = out.lines().filter(x -> !x.isBlank()).map(x -> x.split("\\|", -1)).toList();
        assertTrue(rows.stream().allMatch(r -> r[1].isEmpty()), "no malformed frame:\n" + out);
        assertEquals(2, rows.stream().filter(r -> !r[2].isEmpty()).count(), "the request and the reply:\n" + out);
        List<String> data = rows.stream().map(r -> r[3]).filter(x -> !x.isEmpty()).toList();
        assertEquals(List.of(HexFormat.of().formatHex(after)), data, out);
    }
}
