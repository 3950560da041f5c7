package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwConnection;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
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
import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The responder's IRD enforced on inbound RDMA READ requests, as siw does ({@code siw_qp_rx.c}
 * {@code siw_init_rresp}: the IRQ is sized from the IRD; a request that finds it full is a "Catastrophic error,
 * localized to RDMAP Stream", a TERMINATE of the RDMAP layer, Remote Operation Error, code 0x07, RFC 5040 section
 * 7). The responder raises no async event ({@code siw_init_rresp} calls no {@code siw_qp_event}), reports CLOSE
 * alone and ends in ERR ({@code siw_qp_cm_drop(qp, 1)}, {@code SIW_CM_WORK_CLOSE_LLP}); the requester, as
 * {@code siw_proc_terminate} and {@code siw_qp_llp_close} have it, fails no READ apart: those answered before
 * succeeded, the rest (the one the TERMINATE concerns among them) are flushed, its QP in ERR. A requester within the
 * negotiated depth never trips it. MPA revision 1 exchanges no depths, so a requester whose ORD exceeds the
 * responder's IRD is the realistic overflow.
 */
@Timeout(60)
class SiwIrdTest {
    private static final int MIB = 1 << 20;

    private final SiwHosts h = new SiwHosts(57, 58);

    @TempDir
    Path dir;

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    /** a → b, a with {@code aParam}, b accepting with {@code bParam}. */
    private QueuePair[] connect(IwConnParam aParam, IwConnParam bParam) {
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add)) {
            h.a.cm.connect(qa.qpNum(), l.local(), aParam, h.a.events::add);
            IwCmEvent req = SiwHosts.expect(h.b.event(), IwCmEvent.Type.CONNECT_REQUEST);
            req.request().accept(qb.qpNum(), bParam, h.b.events::add);
            SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);
            SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY);
        }
        return new QueuePair[]{qa, qb};
    }

    /**
     * A raw requester (MPA revision 1) sends three 4 MiB READ requests at once to a responder of IRD 1: the first
     * is served, a later one overflows; the TERMINATE follows the responses already started, and the stream closes.
     * The requester's receive buffer is small and it reads nothing until the responder found the overflow (its QP in
     * ERR), so the first response cannot all be handed to TCP before the responder reads the second request: with the
     * loopback's autotuned buffers (tcp_rmem up to 32 MiB) it could, now and then, and then all three were served.
     */
    @Test
    void aReadRequestBeyondTheIrdIsTerminatedAsACatastrophicStreamError() throws Exception {
        QueuePair qb = h.b.rc();
        h.b.write(0, SiwHosts.random(4 * MIB, 3));
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = new Socket()) {
            s.setReceiveBufferSize(64 << 10); // set before connecting: no window scaling beyond it
            s.connect(l.local(), 10_000);
            s.setSoTimeout(10_000);
            s.getOutputStream().write(Mpa.frame(false, false, Mpa.REVISION_1, null, new byte[0]));
            IwConnection cb = SiwHosts.expect(h.b.event(), IwCmEvent.Type.CONNECT_REQUEST).request()
                    .accept(qb.qpNum(), new IwConnParam(null, 1, 1), h.b.events::add);
            SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);
            assertEquals(1, ((Cep) cb).negotiatedIrd, "revision 1: the responder's own IRD");
            DataInputStream in = new DataInputStream(s.getInputStream());
            in.readFully(new byte[Mpa.RR_HDR]);

            int ulpdu = Iwarp.UNTAGGED_HDR + Iwarp.READ_REQUEST_BODY;
            int fpdu = Mpa.fpduLength(ulpdu);
            ByteBuffer reqs = ByteBuffer.allocate(3 * fpdu);
            for (int i = 0; i < 3; i++) {
                ByteBuffer b = reqs.slice(i * fpdu + 2, ulpdu);
                Iwarp.untagged(b, Iwarp.OP_READ_REQUEST, true, 0, Iwarp.QN_READ_REQUEST, i + 1, 0);
                Iwarp.readRequest(b, 0x1234, 0, 4 * MIB, h.b.mr.rkey(), h.b.buf);
                Mpa.seal(reqs, i * fpdu, ulpdu);
            }
            s.getOutputStream().write(reqs.array()); // one write: the responder finds them together
            eventually(() -> qb.query().qpState() == QpState.ERR, SiwHosts.WAIT, "the overflow found");

            long responseBytes = 0;
            Terminate t = null;
            while (t == null) {
                int len = in.readUnsignedShort();
                byte[] f = new byte[Mpa.fpduLength(len)];
                f[0] = (byte) (len >>> 8);
                f[1] = (byte) len;
                in.readFully(f, 2, f.length - 2);
                Iwarp.Segment seg = Iwarp.parse(ByteBuffer.wrap(f), 2, len);
                if (seg.tagged()) {
                    assertEquals(Iwarp.OP_READ_RESPONSE, seg.opcode());
                    responseBytes += seg.payloadLength();
                } else {
                    t = SiwMpaTerminateTest.terminate(f);
                }
            }
            assertEquals(new Terminate(Terminate.LAYER_RDMAP, Terminate.RDMAP_REMOTE_OPERATION,
                    Terminate.RDMAP_CATASTROPHIC_STREAM), t, "RDMAP, Remote Operation Error, catastrophic stream");
            assertTrue(responseBytes < 3L * 4 * MIB, "not every request was served: " + responseBytes);
            assertEquals(-1, in.read(), "the responder closed its half after the TERMINATE");
            SiwTerminateTest.closedAfterItsTerminate(h.b, qb);
            assertEquals(1, SiwHosts.counter(h.db, "dmaplane_terminate_sent"));
        }
    }

    /**
     * Two siw devices in MPA revision 1: the requester may have 16 READs outstanding, the responder serves one at a
     * time. The requester sees the TERMINATE: the READs answered before it succeeded, every other one is flushed
     * ({@code siw_sq_flush} empties the ORQ with WR_FLUSH_ERR; none fails with REM_OP_ERR), CLOSE alone, and its QP
     * is in ERR. No async event, but SQ_DRAINED when some READs were still in the send queue, not yet taken by the
     * transmit thread, as the TERMINATE came ({@code siw_sq_flush}): how far that thread got is the scheduler's.
     */
    @Test
    void aRequesterBeyondThePeersIrdSeesItsReadFailAndItsQpEnd() {
        h.da.providers.get("siw0").mpa(Mpa.REVISION_1, false);
        QueuePair[] p = connect(new IwConnParam(null, 16, 16), new IwConnParam(null, 16, 1));
        for (int i = 0; i < 16; i++) {
            p[0].postSend(new SendWr.RdmaRead(i, List.of(h.a.sge((i % 4L) * MIB, MIB)), SIGNALED, h.b.buf,
                    h.b.mr.rkey()));
        }
        List<WcStatus> st = new ArrayList<>(SiwHosts.poll(h.a.cq, 16).stream().map(WorkCompletion::status).toList());
        int flushed = st.indexOf(WcStatus.WR_FLUSH_ERR);
        assertTrue(flushed >= 0, "READs flushed: " + st);
        assertTrue(st.subList(0, flushed).stream().allMatch(s -> s == WcStatus.SUCCESS), st.toString());
        assertTrue(st.subList(flushed, 16).stream().allMatch(s -> s == WcStatus.WR_FLUSH_ERR), st.toString());
        assertTrue(16 - flushed >= 2, "more were outstanding than the responder serves: " + st);
        SiwTerminateTest.closedByTerminate(h.a, p[0], true);
        SiwTerminateTest.closedAfterItsTerminate(h.b, p[1]);
        assertEquals(1, SiwHosts.counter(h.da, "dmaplane_terminate_received"));
    }

    /**
     * The same overflow in a capture of both devices: Wireshark decodes the TERMINATE as RDMAP layer, Remote
     * Operation Error, "Catastrophic error, localized to RDMAP Stream" (0x07), with a good CRC and no malformed frame.
     */
    @Test
    void tsharkDecodesTheCatastrophicStreamTerminate() throws Exception {
        ExternalTool tshark = SiwHosts.tshark();
        Path file = dir.resolve("siw-irq.pcap");
        h.da.providers.get("siw0").mpa(Mpa.REVISION_1, false);
        h.captureBoth(file);
        QueuePair[] p = connect(new IwConnParam(null, 16, 16), new IwConnParam(null, 16, 1));
        for (int i = 0; i < 16; i++) {
            p[0].postSend(new SendWr.RdmaRead(i, List.of(h.a.sge(0, 256 << 10)), SIGNALED, h.b.buf, h.b.mr.rkey()));
        }
        assertTrue(SiwHosts.poll(h.a.cq, 16).stream().anyMatch(c -> c.status() == WcStatus.WR_FLUSH_ERR));
        SiwTerminateTest.closedAfterItsTerminate(h.b, p[1]);
        assertTrue(h.da.pcap("off").contains("closed"));

        String out = tshark.run(Duration.ofSeconds(60), "-r", file.toString(), "-Y", "iwarp_rdma.opcode == 7",
                "-T", "fields", "-E", "separator=|", "-e", "_ws.malformed", "-e", "iwarp_ddp.qn", "-e",
                "iwarp_ddp.msn", "-e", "iwarp_rdma.term_layer", "-e", "iwarp_rdma.term_etype_rdma", "-e",
                "iwarp_rdma.term_errcode_rdma");
        assertEquals(List.of("|2|1|0x00|0x02|0x07"), out.lines().filter(x -> !x.isBlank()).toList(), out);
        String verbose = tshark.run(Duration.ofSeconds(60), "-r", file.toString(), "-Y", "iwarp_rdma.opcode == 7",
                "-V");
        assertTrue(verbose.contains("Catastrophic error, localized to RDMAP Stream"), verbose);
        assertTrue(verbose.contains("(Good CRC32)"), verbose);
        String all = tshark.run(Duration.ofSeconds(60), "-r", file.toString(), "-T", "fields", "-e", "_ws.malformed");
        assertTrue(all.lines().allMatch(String::isBlank), "no malformed frame");
    }

    /**
     * MPA v2 with siw's {@code relaxed_ird_negotiation} raises the responder's IRD 2 to the requester's ORD 16
     * ({@code siw_accept}): 16 READs at once, all served, every byte.
     */
    @Test
    void aRequesterWithinTheNegotiatedDepthIsNeverRefused() {
        QueuePair[] p = connect(new IwConnParam(null, 16, 16), new IwConnParam(null, 16, 2));
        h.b.write(0, SiwHosts.random(MIB, 9));
        for (int i = 0; i < 16; i++) {
            p[0].postSend(new SendWr.RdmaRead(i, List.of(h.a.sge((i % 4L) * MIB, MIB)), SIGNALED, h.b.buf,
                    h.b.mr.rkey()));
        }
        assertTrue(SiwHosts.poll(h.a.cq, 16).stream().allMatch(c -> c.status() == WcStatus.SUCCESS));
        for (int i = 0; i < 4; i++) {
            assertArrayEquals(SiwHosts.random(MIB, 9), h.a.read((long) i * MIB, MIB));
        }
        assertEquals(0, SiwHosts.counter(h.db, "dmaplane_terminate_sent"));
        assertEquals(QpState.RTS, p[1].query().qpState());
    }

    /**
     * A requester of ORD 1 to a responder of IRD 1 (MPA v2): eight READs posted at once go one at a time, each request
     * sent when the last one's response ended, and the responder frees its one IRQ entry as each response starts
     * ({@code siw_activate_tx}: {@code irq_get++}), so none of them finds the IRQ full: all served, every byte, no
     * TERMINATE (it fails when the entry is never freed).
     */
    @Test
    void aResponderOfIrdOneServesReadsOneAfterAnother() {
        QueuePair[] p = connect(new IwConnParam(null, 1, 1), new IwConnParam(null, 1, 1));
        h.b.write(0, SiwHosts.random(MIB, 11));
        for (int i = 0; i < 8; i++) {
            p[0].postSend(new SendWr.RdmaRead(i, List.of(h.a.sge((i % 4L) * MIB, MIB)), SIGNALED, h.b.buf,
                    h.b.mr.rkey()));
        }
        List<WorkCompletion> wc = SiwHosts.poll(h.a.cq, 8);
        assertTrue(wc.stream().allMatch(c -> c.status() == WcStatus.SUCCESS), wc.toString());
        for (int i = 0; i < 4; i++) {
            assertArrayEquals(SiwHosts.random(MIB, 11), h.a.read((long) i * MIB, MIB));
        }
        assertEquals(0, SiwHosts.counter(h.db, "dmaplane_terminate_sent"));
        assertEquals(QpState.RTS, p[1].query().qpState());
    }
}
