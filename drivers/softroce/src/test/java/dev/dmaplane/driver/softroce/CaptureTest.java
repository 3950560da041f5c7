package dev.dmaplane.driver.softroce;

import dev.dmaplane.driver.softroce.WireCodec.Accepted;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.AddressHandle;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.UdDestination;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code rxe:pcap}: the packets of every operation the driver sends, captured as the frames they are on the wire,
 * decoded by Wireshark's own {@code infiniband} dissector ({@code epan/dissectors/packet-infiniband.c}, which takes
 * UDP port 4791 as RoCEv2) through the real {@code tshark}: no malformed frame, every frame RoCE, and each BTH,
 * DETH, RETH, AtomicETH, AETH, AtomicAckETH, ImmDt, IETH field and ICRC equal to what was sent. Runs where tshark
 * is on the PATH and fails without it when {@code -Ddmaplane.require.tools} names it (CI).
 */
@Timeout(120)
class CaptureTest extends HcaTestBase {
    /** The tshark fields compared, and how each is read from a decoded packet. */
    private static final List<String> FIELDS = List.of("ip.src", "ip.dst", "udp.dstport", "infiniband.bth.opcode",
            "infiniband.bth.se", "infiniband.bth.padcnt", "infiniband.bth.p_key", "infiniband.bth.destqp",
            "infiniband.bth.a", "infiniband.bth.psn", "infiniband.deth.q_key", "infiniband.deth.srcqp",
            "infiniband.reth.va", "infiniband.reth.r_key", "infiniband.reth.dmalen", "infiniband.atomiceth.swapdt",
            "infiniband.atomiceth.cmpdt", "infiniband.aeth.syndrome", "infiniband.aeth.msn",
            "infiniband.atomicacketh.origremdt", "infiniband.immdt", "infiniband.ieth", "infiniband.invariant.crc");

    @TempDir
    Path dir;

    @Test
    void tsharkDecodesEveryOpcodeAsItWasSent() throws Exception {
        ExternalTool tshark = ExternalTool.require("tshark",
                "apt-get install tshark (Debian, Ubuntu), dnf install wireshark-cli (Fedora)");
        Path file = dir.resolve("rxe.pcap");
        assertTrue(h.driver.pcap(file.toString()).startsWith("capturing to "));
        traffic();
        assertTrue(h.driver.pcap("off").contains("closed"));

        List<byte[]> frames = frames(file);
        List<String> args = new ArrayList<>(List.of("-r", file.toString(), "-T", "fields", "-E", "separator=|",
                "-E", "occurrence=f", "-e", "frame.number", "-e", "_ws.malformed", "-e", "_ws.expert.severity"));
        for (String f : FIELDS) {
            args.add("-e");
            args.add(f);
        }
        String out = tshark.run(Duration.ofSeconds(60), args.toArray(String[]::new));
        List<String> lines = out.lines().filter(l -> !l.isBlank()).toList();
        assertEquals(frames.size(), lines.size(), out);
        Map<Integer, Packet> firstOf = new LinkedHashMap<>();
        Set<Integer> opcodes = new TreeSet<>();
        Set<Integer> syndromes = new TreeSet<>();
        for (int i = 0; i < lines.size(); i++) {
            String[] got = lines.get(i).split("\\|", -1);
            assertEquals(3 + FIELDS.size(), got.length, lines.get(i));
            assertEquals(String.valueOf(i + 1), got[0]);
            assertEquals("", got[1], "frame " + (i + 1) + " malformed: " + lines.get(i));
            assertEquals("", got[2], "frame " + (i + 1) + " has expert info: " + lines.get(i));
            byte[] d = frames.get(i);
            Map<String, String> want = expected(d);
            for (int f = 0; f < FIELDS.size(); f++) {
                String name = FIELDS.get(f);
                assertEquals(want.get(name), normalise(name, got[3 + f]), "frame " + (i + 1) + " " + name);
            }
            opcodes.add(d[WireCodec.BTH_AT] & 0xff);
            firstOf.putIfAbsent(d[WireCodec.BTH_AT] & 0xff, ((Accepted) WireCodec.decode(d, d.length)).packet());
            if (!want.get("infiniband.aeth.syndrome").isEmpty()) {
                syndromes.add(Integer.parseInt(want.get("infiniband.aeth.syndrome")));
            }
        }
        assertEquals(new TreeSet<>(List.of(0x00, 0x01, 0x02, 0x05, 0x06, 0x08, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
                0x11, 0x12, 0x13, 0x14, 0x65)), opcodes, "SEND first/middle/last/only-imm, WRITE first/last/only/"
                + "only-imm, READ request and responses, ACK, atomic ACK, CMP_SWAP, FETCH_ADD, UD SEND with imm");
        // what the work requests asked for, as tshark read it (the loop above: tshark = codec)
        Packet write = firstOf.get(0x06);
        assertEquals(rc[1].qpNum(), write.destQpn());
        assertEquals(h.b.buf + 65536, write.va());
        assertEquals(h.b.mr.rkey(), write.rkey());
        assertEquals(2000, write.dmaLen());
        assertEquals(rc[0].qpNum(), firstOf.get(0x11).destQpn(), "ACKs go back to the requester");
        assertEquals(0x12345678, firstOf.get(0x05).imm());
        assertEquals(0x0BADF00D, firstOf.get(0x0b).imm());
        assertEquals(h.b.buf, firstOf.get(0x0c).va());
        assertEquals(2500, firstOf.get(0x0c).dmaLen());
        assertEquals(0x1111, firstOf.get(0x13).swapAdd());
        assertEquals(5, firstOf.get(0x14).swapAdd());
        assertEquals(0, firstOf.get(0x12).orig(), "the CMP_SWAP's original value (the target was 0)");
        assertEquals(0x11111111, firstOf.get(0x65).qkey());
        assertEquals(udSender.qpNum(), firstOf.get(0x65).srcQpn());
        assertEquals(77, firstOf.get(0x65).imm());
        assertTrue(syndromes.contains(Packet.AETH_ACK) && syndromes.contains(Packet.AETH_NAK_REM_ACCESS),
                "ACK and a Remote Access Error NAK: " + syndromes);
    }

    @Test
    void pcapRefusesANameThatIsNoFile() {
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> h.driver.pcap(" ")).errno());
        assertEquals(Errno.EIO, assertThrows(ErrnoException.class,
                () -> h.driver.pcap(dir.resolve("no/such/dir/x.pcap").toString())).errno());
        assertEquals("capture off", h.driver.pcap("off"));
    }

    /** What tshark prints for {@code name}, as this test writes the expected values: unsigned decimal, or text. */
    private static String normalise(String name, String v) {
        if (v.isEmpty() || name.startsWith("ip.")) {
            return v;
        }
        if (v.startsWith("0x")) {
            return Long.toUnsignedString(Long.parseUnsignedLong(v.substring(2), 16));
        }
        if (name.equals("infiniband.immdt") || name.equals("infiniband.ieth")) {
            return Long.toUnsignedString(Long.parseUnsignedLong(v.replace(":", ""), 16));
        }
        return switch (v) {
            case "True" -> "1";
            case "False" -> "0";
            default -> v;
        };
    }

    /** The fields of the datagram {@code d} as the driver's codec reads them back (empty for absent headers). */
    private static Map<String, String> expected(byte[] d) {
        Accepted a = (Accepted) WireCodec.decode(d, d.length);
        Packet p = a.packet();
        Opcode op = Opcode.of(d[WireCodec.BTH_AT]);
        Map<String, String> m = new LinkedHashMap<>();
        for (String f : FIELDS) {
            m.put(f, "");
        }
        m.put("ip.src", p.sgid().toInetAddress().getHostAddress());
        m.put("ip.dst", p.dgid().toInetAddress().getHostAddress());
        m.put("udp.dstport", "4791");
        m.put("infiniband.bth.opcode", String.valueOf(op.code));
        m.put("infiniband.bth.se", p.se() ? "1" : "0");
        m.put("infiniband.bth.padcnt", String.valueOf(d[WireCodec.BTH_AT + 1] >> 4 & 3));
        m.put("infiniband.bth.p_key", String.valueOf(a.pkey()));
        m.put("infiniband.bth.destqp", String.valueOf(p.destQpn()));
        m.put("infiniband.bth.a", p.ackReq() ? "1" : "0");
        m.put("infiniband.bth.psn", String.valueOf(p.psn()));
        if (op.has(Opcode.DETH)) {
            m.put("infiniband.deth.q_key", Integer.toUnsignedString(p.qkey()));
            m.put("infiniband.deth.srcqp", String.valueOf(p.srcQpn()));
        }
        if (op.has(Opcode.RETH) || op.has(Opcode.ATMETH)) {
            m.put("infiniband.reth.va", Long.toUnsignedString(p.va()));
            m.put("infiniband.reth.r_key", Integer.toUnsignedString(p.rkey()));
        }
        if (op.has(Opcode.RETH)) {
            m.put("infiniband.reth.dmalen", String.valueOf(p.dmaLen()));
        }
        if (op.has(Opcode.ATMETH)) {
            m.put("infiniband.atomiceth.swapdt", Long.toUnsignedString(p.swapAdd()));
            m.put("infiniband.atomiceth.cmpdt", Long.toUnsignedString(p.compare()));
        }
        if (op.has(Opcode.AETH)) {
            m.put("infiniband.aeth.syndrome", String.valueOf(p.syndrome()));
            m.put("infiniband.aeth.msn", String.valueOf(p.msn()));
        }
        if (op.has(Opcode.ATMACK)) {
            m.put("infiniband.atomicacketh.origremdt", Long.toUnsignedString(p.orig()));
        }
        if (op.has(Opcode.IMM)) {
            m.put("infiniband.immdt", Integer.toUnsignedString(p.imm()));
        }
        if (op.has(Opcode.IETH)) {
            m.put("infiniband.ieth", Integer.toUnsignedString(p.imm()));
        }
        m.put("infiniband.invariant.crc", Integer.toUnsignedString(WireCodec.get32(d, d.length - 4)));
        return m;
    }

    /** The RC pair and the sending UD QP of {@link #traffic}. */
    private QueuePair[] rc;
    private QueuePair udSender;

    private void traffic() {
        QueuePair[] p = h.pair();
        rc = p;
        byte[] data = Hcas.random(3000, 7);
        h.a.write(0, data);
        p[1].postRecv(List.of(RecvWr.of(1, h.b.sge(0, 4096)), RecvWr.of(2, h.b.sge(4096, 64)),
                RecvWr.of(3, h.b.sge(8192, 64))));
        p[0].postSend(new SendWr.Send(10, List.of(h.a.sge(0, 3000)), SIGNALED, null)); // FIRST, MIDDLE, LAST
        p[0].postSend(new SendWr.SendWithImm(11, List.of(h.a.sge(0, 5)), SIGNALED, 0x12345678, null));
        p[0].postSend(new SendWr.RdmaWrite(12, List.of(h.a.sge(0, 2000)), SIGNALED, h.b.buf + 65536, h.b.mr.rkey()));
        p[0].postSend(new SendWr.RdmaWriteWithImm(13, List.of(h.a.sge(0, 7)), SIGNALED, h.b.buf + 131072,
                h.b.mr.rkey(), 0x0BADF00D));
        p[0].postSend(new SendWr.RdmaRead(14, List.of(h.a.sge(65536, 2500)), SIGNALED, h.b.buf, h.b.mr.rkey()));
        p[0].postSend(new SendWr.AtomicCmpAndSwp(15, List.of(h.a.sge(131072, 8)), SIGNALED, h.b.buf + 200_000,
                h.b.mr.rkey(), 0, 0x1111));
        p[0].postSend(new SendWr.AtomicFetchAndAdd(16, List.of(h.a.sge(131080, 8)), SIGNALED, h.b.buf + 200_000,
                h.b.mr.rkey(), 5));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 7);
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        assertEquals(3, Hcas.poll(h.b.cq, 3).size());
        // a NAK: a write through a bad rkey (Remote Access Error)
        p[0].postSend(new SendWr.RdmaWrite(17, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey() + 1));
        assertEquals(WcStatus.REM_ACCESS_ERR, Hcas.one(h.a.cq).status());
        // UD with a DETH
        QueuePair ua = h.a.ud();
        udSender = ua;
        QueuePair ub = h.b.ud();
        for (QueuePair q : List.of(ua, ub)) {
            q.modify(QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1).qkey(0x11111111).build());
            q.modify(QpAttr.builder().state(QpState.RTR).build());
            q.modify(QpAttr.builder().state(QpState.RTS).sqPsn(0).build());
        }
        AddressHandle ah = h.a.pd.createAh(AhAttr.roce(h.b.gid, 1, 1));
        ub.postRecv(RecvWr.of(20, h.b.sge(300_000, 40 + 64)));
        ua.postSend(new SendWr.SendWithImm(21, List.of(h.a.sge(0, 10)), SIGNALED, 77,
                new UdDestination(ah, ub.qpNum(), 0x11111111)));
        assertTrue(Hcas.one(h.a.cq).isSuccess());
        assertTrue(Hcas.one(h.b.cq).isSuccess());
    }

    /** The frames of a pcap file: each one's bytes after its 14-byte Ethernet header. */
    static List<byte[]> frames(Path file) throws IOException {
        byte[] f = Files.readAllBytes(file);
        List<byte[]> out = new ArrayList<>();
        int at = 24;
        while (at < f.length) {
            int incl = (f[at + 8] & 0xff) | (f[at + 9] & 0xff) << 8 | (f[at + 10] & 0xff) << 16 | (f[at + 11] & 0xff) << 24;
            byte[] d = new byte[incl - 14];
            System.arraycopy(f, at + 16 + 14, d, 0, d.length);
            out.add(d);
            at += 16 + incl;
        }
        return out;
    }
}
