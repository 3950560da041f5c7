package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.RejectReason;
import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The CM MADs of a connection's life (REQ, REP, RTU, DREQ, DREP), and of a request retried, MRAed and rejected
 * (REQ, MRA, REJ), captured with {@code rxe:pcap} and decoded by the
 * real {@code tshark}'s {@code infiniband} dissector ({@code epan/dissectors/packet-infiniband.c}: the MAD header,
 * the CM messages of IBTA 12.6 and the RDMA IP CM header of annex A11): no malformed frame, every MAD a UD SEND
 * from QP 1 to QP 1 with the GSI Q_Key, class 0x07 version 2 method SEND, and the fields each message carries equal
 * to what the two ends set up (QPNs, starting PSNs, service ID, resources, retry counts, MTU, GIDs, hop limit,
 * communication IDs that pair up, the rdma_cm header's port and addresses, the private data), the REP and RTU with
 * the REQ's transaction ID and the DREP with the DREQ's ({@code cm.c}'s {@code cm_id_priv->tid}). Skipped without
 * tshark unless {@code -Ddmaplane.require.tools} names it.
 */
@Timeout(120)
class CmCaptureTest extends RdmaCmTestBase {
    private static final String[] FIELDS = {"frame.number", "_ws.malformed", "infiniband.bth.destqp",
        "infiniband.deth.q_key", "infiniband.deth.srcqp", "infiniband.mad.mgmtclass", "infiniband.mad.classversion",
        "infiniband.mad.method", "infiniband.mad.attributeid", "infiniband.mad.transactionid",
        "infiniband.cm.req", "infiniband.cm.req.serviceid", "infiniband.cm.req.localqpn",
        "infiniband.cm.req.responderres", "infiniband.cm.req.initdepth", "infiniband.cm.req.startpsn",
        "infiniband.cm.req.retrcount", "infiniband.cm.req.rnrretrcount", "infiniband.cm.req.pppmtu",
        "infiniband.cm.req.maxcmretr", "infiniband.cm.req.prim_localgid_ipv4", "infiniband.cm.req.prim_remotegid_ipv4",
        "infiniband.cm.req.prim_hoplim", "infiniband.cm.req.ip_cm.sport", "infiniband.cm.req.ip_cm.sip4",
        "infiniband.cm.req.ip_cm.dip4", "infiniband.cm.req.ip_cm.ipv", "infiniband.cm.rep", "infiniband.cm.rep.remotecommid",
        "infiniband.cm.rep.localqpn", "infiniband.cm.rep.startpsn", "infiniband.cm.rep.respres",
        "infiniband.cm.rep.initdepth", "infiniband.cm.rep.rnrretrcount", "infiniband.cm.rtu.localcommid",
        "infiniband.cm.rtu.remotecommid", "infiniband.cm.dreq.localcommid", "infiniband.cm.dreq.remotecommid",
        "infiniband.cm.req.remoteqpneecn", "infiniband.cm.drsp.localcommid", "infiniband.cm.drsp.remotecommid",
        "infiniband.cm.rej.localcommid", "infiniband.cm.rej.remotecommid", "infiniband.cm.rej.msgrej",
        "infiniband.cm.rej.reason"};

    @TempDir
    Path dir;

    /** A tshark number ({@code 0x}-prefixed hexadecimal or decimal) as a long; other text as it is. */
    private static Object value(String v) {
        if (v.startsWith("0x")) {
            return Long.parseUnsignedLong(v.substring(2), 16);
        }
        return v.matches("\\d+") ? (Object) Long.parseLong(v) : v;
    }

    @Test
    void tsharkDecodesReqRepRtuDreqDrepAsSent() throws Exception {
        ExternalTool tshark = ExternalTool.require("tshark",
                "apt-get install tshark (Debian, Ubuntu), dnf install wireshark-cli (Fedora)");
        Path file = dir.resolve("cm.pcap");
        assertTrue(h.driver.pcap(file.toString()).startsWith("capturing to "));
        established();
        int clientPsn = client.qp.query().sqPsn();
        int serverPsn = server.qp.query().sqPsn();
        CmFlows.disconnect(client, server);
        assertTrue(h.driver.pcap("off").contains("closed"));

        List<Map<String, Object>> mads = mads(tshark, file);
        List<Object> attrs = mads.stream().map(m -> m.get("infiniband.mad.attributeid")).toList();
        assertEquals(List.of(0x10L, 0x13L, 0x14L, 0x15L, 0x16L), attrs, "REQ, REP, RTU, DREQ, DREP: " + mads);
        Map<String, Object> req = mads.get(0);
        Map<String, Object> rep = mads.get(1);
        Map<String, Object> rtu = mads.get(2);
        Map<String, Object> dreq = mads.get(3);
        Map<String, Object> drep = mads.get(4);
        assertEquals(0x0000000001061D2FL, req.get("infiniband.cm.req.serviceid"), "RDMA_PS_TCP << 16 | 7471");
        assertEquals((long) client.qp.qpNum(), req.get("infiniband.cm.req.localqpn"));
        assertEquals((long) clientPsn, req.get("infiniband.cm.req.startpsn"));
        assertEquals(2L, req.get("infiniband.cm.req.responderres"));
        assertEquals(3L, req.get("infiniband.cm.req.initdepth"));
        assertEquals(6L, req.get("infiniband.cm.req.retrcount"));
        assertEquals(5L, req.get("infiniband.cm.req.rnrretrcount"));
        assertEquals(3L, req.get("infiniband.cm.req.pppmtu"), "IB_MTU_1024 on a 1500-byte netdev");
        assertEquals(15L, req.get("infiniband.cm.req.maxcmretr"));
        assertEquals("10.0.0.4", req.get("infiniband.cm.req.prim_localgid_ipv4"));
        assertEquals("10.0.0.5", req.get("infiniband.cm.req.prim_remotegid_ipv4"));
        assertEquals(64L, req.get("infiniband.cm.req.prim_hoplim"));
        assertEquals((long) client.id.localAddr().getPort(), req.get("infiniband.cm.req.ip_cm.sport"));
        assertEquals("10.0.0.4", req.get("infiniband.cm.req.ip_cm.sip4"));
        assertEquals("10.0.0.5", req.get("infiniband.cm.req.ip_cm.dip4"));
        Object clientComm = req.get("infiniband.cm.req");
        assertEquals(clientComm, rep.get("infiniband.cm.rep.remotecommid"));
        Object serverComm = rep.get("infiniband.cm.rep");
        assertEquals((long) server.qp.qpNum(), rep.get("infiniband.cm.rep.localqpn"));
        assertEquals((long) serverPsn, rep.get("infiniband.cm.rep.startpsn"));
        assertEquals(3L, rep.get("infiniband.cm.rep.respres"));
        assertEquals(2L, rep.get("infiniband.cm.rep.initdepth"));
        assertEquals(7L, rep.get("infiniband.cm.rep.rnrretrcount"));
        assertEquals(clientComm, rtu.get("infiniband.cm.rtu.localcommid"));
        assertEquals(serverComm, rtu.get("infiniband.cm.rtu.remotecommid"));
        assertEquals(clientComm, dreq.get("infiniband.cm.dreq.localcommid"));
        assertEquals(serverComm, dreq.get("infiniband.cm.dreq.remotecommid"));
        assertEquals((long) server.qp.qpNum(), dreq.get("infiniband.cm.req.remoteqpneecn"));
        assertEquals(serverComm, drep.get("infiniband.cm.drsp.localcommid"));
        assertEquals(clientComm, drep.get("infiniband.cm.drsp.remotecommid"));
        Object reqTid = req.get("infiniband.mad.transactionid");
        assertEquals(reqTid, rep.get("infiniband.mad.transactionid"), "cm_format_rep: the REQ's TID");
        assertEquals(reqTid, rtu.get("infiniband.mad.transactionid"), "cm_format_rtu: the REQ's TID");
        assertEquals(dreq.get("infiniband.mad.transactionid"), drep.get("infiniband.mad.transactionid"),
                "cm_format_drep: the DREQ's TID");
    }

    /**
     * A REQ retried to a server that has not accepted yet (CM response timeout 8, one retry), the MRA the server's CM
     * answers the retry with ({@code cm_dup_req_handler} in MRA_REQ_SENT), then the server's {@code rdma_reject}: the
     * retry is the REQ byte for byte (its TID too), the MRA a well-formed CM MAD of attribute 0x11 with the REQ's TID
     * (Wireshark 4.0's dissector decodes the MAD header of an MRA, not its fields), and the REJ names the server's
     * communication ID (MRA_REQ_SENT: {@code cm_format_rej} writes it), the client's, message REQ, reason 28
     * (consumer defined), with the REQ's TID.
     */
    @Test
    void tsharkDecodesAnMraToARepeatedReqAndTheRej() throws Exception {
        ExternalTool tshark = ExternalTool.require("tshark",
                "apt-get install tshark (Debian, Ubuntu), dnf install wireshark-cli (Fedora)");
        Path file = dir.resolve("cm-mra-rej.pcap");
        h.core.cm().setCmResponseTimeout(8);
        h.core.cm().setMaxCmRetries(1);
        RawCm raw = new RawCm(h);
        assertTrue(h.driver.pcap(file.toString()).startsWith("capturing to "));
        CmFlows.listen(server, SERVER, 4);
        CmFlows.resolve(client, CLIENT, SERVER);
        client.id.connect(ConnParam.of(null, 1, 1));
        CmId conn = server.expect(CmEventType.CONNECT_REQUEST).id();
        eventually(() -> raw.count(RawCm.MRA) == 1, Duration.ofSeconds(10), "the MRA to the REQ's retry");
        conn.reject(null);
        assertEquals(RejectReason.CONSUMER_DEFINED, client.expect(CmEventType.REJECTED).status());
        assertTrue(h.driver.pcap("off").contains("closed"));

        List<Map<String, Object>> mads = mads(tshark, file);
        List<Object> attrs = mads.stream().map(m -> m.get("infiniband.mad.attributeid")).toList();
        assertEquals(List.of(0x10L, 0x10L, 0x11L, 0x12L), attrs, "REQ, its retry, MRA, REJ: " + mads);
        Map<String, Object> req = mads.get(0);
        Map<String, Object> mra = mads.get(2);
        Map<String, Object> rej = mads.get(3);
        Map<String, Object> retry = new HashMap<>(mads.get(1));
        retry.put("frame.number", req.get("frame.number"));
        assertEquals(req, retry, "the retry: the REQ again");
        Object tid = req.get("infiniband.mad.transactionid");
        assertEquals(tid, mra.get("infiniband.mad.transactionid"), "cm_format_mra: the REQ's TID");
        assertEquals(tid, rej.get("infiniband.mad.transactionid"), "cm_format_rej: the REQ's TID");
        Object clientComm = req.get("infiniband.cm.req");
        assertEquals(clientComm, rej.get("infiniband.cm.rej.remotecommid"));
        assertNotEquals(0L, rej.get("infiniband.cm.rej.localcommid"), "MRA_REQ_SENT: the server's ID named");
        assertEquals(0L, rej.get("infiniband.cm.rej.msgrej"), "message REJected: the REQ");
        assertEquals((long) RejectReason.CONSUMER_DEFINED, rej.get("infiniband.cm.rej.reason"));
    }

    /**
     * The MADs of {@code file} as tshark decodes them, {@link #FIELDS} by name, each checked to be well formed and a
     * UD SEND of the CM class from QP 1 to QP 1 with the GSI Q_Key.
     */
    private static List<Map<String, Object>> mads(ExternalTool tshark, Path file)
            throws IOException, InterruptedException {
        List<String> args = new ArrayList<>(List.of("-r", file.toString(), "-Y", "infiniband.mad", "-T", "fields",
                "-E", "separator=|", "-E", "occurrence=f"));
        for (String f : FIELDS) {
            args.add("-e");
            args.add(f);
        }
        String out = tshark.run(Duration.ofSeconds(60), args.toArray(String[]::new));
        List<Map<String, Object>> mads = new ArrayList<>();
        for (String line : out.lines().filter(x -> !x.isBlank()).toList()) {
            String[] got = line.split("\\|", -1);
            assertEquals(FIELDS.length, got.length, line);
            Map<String, Object> m = new HashMap<>();
            for (int i = 0; i < FIELDS.length; i++) {
                m.put(FIELDS[i], value(got[i]));
            }
            assertEquals("", m.get("_ws.malformed"), line);
            assertEquals(1L, m.get("infiniband.bth.destqp"), line);
            assertEquals(1L, m.get("infiniband.deth.srcqp"), line);
            assertEquals(0x80010000L, m.get("infiniband.deth.q_key"), line);
            assertEquals(7L, m.get("infiniband.mad.mgmtclass"), line);
            assertEquals(2L, m.get("infiniband.mad.classversion"), line);
            assertEquals(3L, m.get("infiniband.mad.method"), line);
            mads.add(m);
        }
        return mads;
    }
}
