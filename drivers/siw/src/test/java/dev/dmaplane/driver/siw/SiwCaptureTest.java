package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code siw:pcap}: the streams of two siw devices captured as the TCP segments they are, decoded by Wireshark's
 * own dissectors through the real {@code tshark} ({@code epan/dissectors/packet-iwarp-mpa.c}, found by its TCP
 * heuristic, and {@code packet-iwarp-ddp-rdmap.c}): the MPA request and reply with their flags and private data,
 * a rejected request, FPDUs with a good CRC32C, and the Send, RDMA Write, Read Request, Read Response and
 * Terminate headers with every field as sent (RFC 5044 section 7, RFC 5041 section 4, RFC 5040 section 4). Runs
 * where tshark is on the PATH and fails without it when {@code -Ddmaplane.require.tools} names it (CI).
 */
@Timeout(120)
class SiwCaptureTest {
    private static final List<String> FIELDS = List.of("tcp.srcport", "iwarp_mpa.key.req", "iwarp_mpa.key.rep",
            "iwarp_mpa.crc_flag", "iwarp_mpa.rej_flag", "iwarp_mpa.rev", "iwarp_mpa.pdlength",
            "iwarp_mpa.privatedata", "iwarp_mpa.ulpdulength", "iwarp_ddp.tagged_flag", "iwarp_ddp.last_flag",
            "iwarp_ddp.dv", "iwarp_ddp.stag", "iwarp_ddp.tagged_offset", "iwarp_ddp.qn", "iwarp_ddp.msn",
            "iwarp_ddp.mo", "iwarp_rdma.version", "iwarp_rdma.opcode", "iwarp_rdma.sinkstag", "iwarp_rdma.sinkto",
            "iwarp_rdma.rdmardsz", "iwarp_rdma.srcstag", "iwarp_rdma.srcto", "iwarp_rdma.term_layer",
            "iwarp_rdma.term_etype_rdma", "iwarp_rdma.term_errcode_rdma");

    private final SiwHosts h = new SiwHosts(39, 40);

    @TempDir
    Path dir;

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    private static String f(String[] row, String field) {
        return row[2 + FIELDS.indexOf(field)];
    }

    private static List<String[]> concat(List<String[]> a, List<String[]> b) {
        List<String[]> r = new ArrayList<>(a);
        r.addAll(b);
        return r;
    }

    private static String hex32(int v) {
        return String.format("0x%08x", v);
    }

    private static String hex64(long v) {
        return String.format("0x%016x", v);
    }

    @Test
    void tsharkDecodesTheMpaStartUpAndEveryOpcodeAsSent() throws Exception {
        ExternalTool tshark = SiwHosts.tshark();
        Path file = dir.resolve("siw.pcap");
        // revision 1, as RFC 5044 and the dissector know it; MPA v2 has its own test below
        h.da.providers.get("siw0").mpa(Mpa.REVISION_1, false);
        h.db.providers.get("siw0").mpa(Mpa.REVISION_1, false);
        h.captureBoth(file);

        QueuePair qa = h.a.rc();
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add)) {
            h.a.cm.connect(qa.qpNum(), l.local(), new IwConnParam(new byte[]{0x5e}, 1, 1), h.a.events::add);
            h.b.event().request().reject(new byte[]{0x7e, 0x7f});
            h.a.event();
        }
        QueuePair[] p = h.pair();
        p[1].postRecv(List.of(RecvWr.of(1, h.b.sge(0, 4096))));
        p[0].postSend(new SendWr.Send(1, List.of(h.a.sge(0, 100)), SIGNALED, null));
        p[0].postSend(new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 200)), SIGNALED, h.b.buf + 4096, h.b.mr.rkey()));
        p[0].postSend(new SendWr.RdmaRead(3, List.of(h.a.sge(8192, 300)), SIGNALED, h.b.buf + 4096,
                h.b.mr.rkey()));
        assertTrue(SiwHosts.poll(h.a.cq, 3).stream().allMatch(c -> c.status() == WcStatus.SUCCESS));
        p[0].postSend(new SendWr.RdmaRead(4, List.of(h.a.sge(8192, 16)), SIGNALED, h.b.buf, 0x0bad0bad));
        assertEquals(WcStatus.WR_FLUSH_ERR, SiwHosts.one(h.a.cq).status(), "siw_proc_terminate fails nothing apart");
        SiwHosts.one(h.b.cq); // the SEND's receive; the TERMINATE reached the requester, so the capture holds it
        assertTrue(h.da.pcap("off").contains("closed"));

        List<String> args = new ArrayList<>(List.of("-r", file.toString(), "-T", "fields", "-E", "separator=|",
                "-E", "occurrence=f", "-e", "frame.number", "-e", "_ws.malformed"));
        for (String f : FIELDS) {
            args.add("-e");
            args.add(f);
        }
        String out = tshark.run(Duration.ofSeconds(60), args.toArray(String[]::new));
        List<String[]> rows = out.lines().filter(x -> !x.isBlank()).map(x -> x.split("\\|", -1)).toList();
        assertTrue(rows.size() >= 18, out);
        assertTrue(rows.stream().allMatch(r -> r[1].isEmpty()), "no malformed frame:\n" + out);

        List<String[]> requests = rows.stream().filter(r -> !f(r, "iwarp_mpa.key.req").isEmpty()).toList();
        List<String[]> replies = rows.stream().filter(r -> !f(r, "iwarp_mpa.key.rep").isEmpty()).toList();
        assertEquals(List.of("5e", "010203"), requests.stream().map(r -> f(r, "iwarp_mpa.privatedata")).toList());
        assertEquals(List.of("7e7f", "0405"), replies.stream().map(r -> f(r, "iwarp_mpa.privatedata")).toList());
        assertEquals(List.of("1", "0"), replies.stream().map(r -> f(r, "iwarp_mpa.rej_flag")).toList(), out);
        for (String[] r : concat(requests, replies)) {
            assertEquals("1", f(r, "iwarp_mpa.crc_flag"), "CRC on");
            assertEquals("1", f(r, "iwarp_mpa.rev"));
        }
        assertEquals("4d504120494420526571204672616d65", f(requests.getFirst(), "iwarp_mpa.key.req"),
                "MPA ID Req Frame");

        List<String[]> fpdus = rows.stream().filter(r -> !f(r, "iwarp_mpa.ulpdulength").isEmpty()).toList();
        assertEquals(List.of("0x03", "0x00", "0x01", "0x02", "0x01", "0x07"),
                fpdus.stream().map(r -> f(r, "iwarp_rdma.opcode")).toList(), out);
        for (String[] r : fpdus) {
            assertEquals("1", f(r, "iwarp_ddp.dv"), "DDP version 1");
            assertEquals("1", f(r, "iwarp_rdma.version"), "RDMAP version 1");
            assertEquals("1", f(r, "iwarp_ddp.last_flag"), "one segment per message here");
        }
        String aKey = hex32(h.a.mr.lkey());
        String bKey = hex32(h.b.mr.rkey());
        String[] send = fpdus.get(0);
        assertEquals(List.of("118", "0", "0", "1", "0"), List.of(f(send, "iwarp_mpa.ulpdulength"),
                f(send, "iwarp_ddp.tagged_flag"), f(send, "iwarp_ddp.qn"), f(send, "iwarp_ddp.msn"),
                f(send, "iwarp_ddp.mo")), "Send: 18-byte header and 100 bytes on queue 0, MSN 1");
        String[] write = fpdus.get(1);
        assertEquals(List.of("214", "1", bKey, hex64(h.b.buf + 4096)), List.of(f(write, "iwarp_mpa.ulpdulength"),
                f(write, "iwarp_ddp.tagged_flag"), f(write, "iwarp_ddp.stag"), f(write, "iwarp_ddp.tagged_offset")));
        String[] rreq = fpdus.get(2);
        assertEquals(List.of("1", "1", aKey, hex64(h.a.buf + 8192), "300", bKey, hex64(h.b.buf + 4096)),
                List.of(f(rreq, "iwarp_ddp.qn"), f(rreq, "iwarp_ddp.msn"), f(rreq, "iwarp_rdma.sinkstag"),
                        f(rreq, "iwarp_rdma.sinkto"), f(rreq, "iwarp_rdma.rdmardsz"), f(rreq, "iwarp_rdma.srcstag"),
                        f(rreq, "iwarp_rdma.srcto")));
        String[] rresp = fpdus.get(3);
        assertEquals(List.of("314", "1", aKey, hex64(h.a.buf + 8192)), List.of(f(rresp, "iwarp_mpa.ulpdulength"),
                f(rresp, "iwarp_ddp.tagged_flag"), f(rresp, "iwarp_ddp.stag"), f(rresp, "iwarp_ddp.tagged_offset")),
                "the Read Response is a tagged write into the sink");
        assertEquals(List.of("2", "0x0bad0bad"), List.of(f(fpdus.get(4), "iwarp_ddp.msn"),
                f(fpdus.get(4), "iwarp_rdma.srcstag")));
        String[] term = fpdus.get(5);
        assertEquals(List.of("2", "1", "0x00", "0x01", "0x00"), List.of(f(term, "iwarp_ddp.qn"),
                f(term, "iwarp_ddp.msn"), f(term, "iwarp_rdma.term_layer"), f(term, "iwarp_rdma.term_etype_rdma"),
                f(term, "iwarp_rdma.term_errcode_rdma")), "RDMAP layer, Remote Protection Error, Invalid STag");

        String verbose = tshark.run(Duration.ofSeconds(60), "-r", file.toString(), "-V");
        assertEquals(fpdus.size(), verbose.lines().filter(x -> x.contains("(Good CRC32)")).count(), verbose);
        assertTrue(verbose.lines().noneMatch(x -> x.contains("Bad CRC32")));
    }

    /**
     * MPA v2 (RFC 6581) in a capture: Wireshark 4.0's dissector predates RFC 6581, so it shows revision 2 as a
     * warning, the H bit as a reserved flag and the IRD/ORD words as the first four bytes of the private data, but
     * decodes every frame, finds no malformed one, and follows the stream into full operation: the zero-length RDMA
     * WRITE of the RTR message and the data after it, with good CRCs.
     */
    @Test
    void tsharkDecodesAnMpaV2StartUpWithItsRtrMessage() throws Exception {
        ExternalTool tshark = SiwHosts.tshark();
        Path file = dir.resolve("siw-v2.pcap");
        h.da.providers.get("siw0").mpa(Mpa.REVISION_2, true);
        h.captureBoth(file);
        QueuePair[] p = h.pair();
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 200)), SIGNALED, h.b.buf, h.b.mr.rkey()));
        assertEquals(WcStatus.SUCCESS, SiwHosts.one(h.a.cq).status());
        assertTrue(h.da.pcap("off").contains("closed"));

        List<String> args = new ArrayList<>(List.of("-r", file.toString(), "-T", "fields", "-E", "separator=|",
                "-E", "occurrence=f", "-e", "frame.number", "-e", "_ws.malformed"));
        for (String f : FIELDS) {
            args.add("-e");
            args.add(f);
        }
        args.addAll(List.of("-e", "iwarp_mpa.res"));
        String out = tshark.run(Duration.ofSeconds(60), args.toArray(String[]::new));
        List<String[]> rows = out.lines().filter(x -> !x.isBlank()).map(x -> x.split("\\|", -1)).toList();
        assertTrue(rows.stream().allMatch(r -> r[1].isEmpty()), "no malformed frame:\n" + out);
        List<String[]> rr = rows.stream().filter(r -> !f(r, "iwarp_mpa.key.req").isEmpty()
                || !f(r, "iwarp_mpa.key.rep").isEmpty()).toList();
        assertEquals(2, rr.size(), out);
        for (String[] r : rr) {
            assertEquals("2", f(r, "iwarp_mpa.rev"), "revision 2");
            assertEquals("1", f(r, "iwarp_mpa.crc_flag"));
            assertEquals("0x10", "0x" + Integer.toHexString(Integer.decode(r[r.length - 1])), "the H bit");
        }
        // IRD word: peer-to-peer bit and 16; ORD word: the WRITE RTR bit and 16; then the consumer's bytes
        assertEquals("80108010010203", f(rr.get(0), "iwarp_mpa.privatedata"));
        assertEquals("7", f(rr.get(0), "iwarp_mpa.pdlength"));
        assertEquals("801080100405", f(rr.get(1), "iwarp_mpa.privatedata"));

        List<String[]> fpdus = rows.stream().filter(r -> !f(r, "iwarp_mpa.ulpdulength").isEmpty()).toList();
        assertEquals(2, fpdus.size(), out);
        String[] rtr = fpdus.get(0);
        assertEquals(List.of("14", "1", "0x00", "0x00000001", "0x0000000000000000"),
                List.of(f(rtr, "iwarp_mpa.ulpdulength"), f(rtr, "iwarp_ddp.tagged_flag"), f(rtr, "iwarp_rdma.opcode"),
                        f(rtr, "iwarp_ddp.stag"), f(rtr, "iwarp_ddp.tagged_offset")),
                "the RTR message: a zero-length RDMA WRITE to STag 1");
        assertEquals(f(rr.get(0), "tcp.srcport"), f(rtr, "tcp.srcport"), "sent by the initiator");
        assertEquals("214", f(fpdus.get(1), "iwarp_mpa.ulpdulength"));
        String verbose = tshark.run(Duration.ofSeconds(60), "-r", file.toString(), "-V");
        assertEquals(2, verbose.lines().filter(x -> x.contains("(Good CRC32)")).count(), verbose);
    }
}
