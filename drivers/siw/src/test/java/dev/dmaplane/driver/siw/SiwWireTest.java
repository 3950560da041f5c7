package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.zip.CRC32C;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * siw against a peer written from the RFCs alone, on a plain socket: the MPA start-up (RFC 5044 section 7.1: the
 * request and reply keys, the CRC flag, revision 1), an untagged Send FPDU (RFC 5044 section 6: ULPDU length, pad,
 * CRC32C; RFC 5041 section 4.3: the untagged header; RFC 5040 section 4.3: Send opcode 3) placed into the posted
 * receive, then an FPDU with a corrupted CRC, which siw answers with a TERMINATE naming the LLP layer and the MPA CRC
 * error (RFC 5044 section 8, {@code siw_qp_rx.c}, {@code siw_init_terminate}) before its
 * QP goes to ERR. As Linux siw does: {@code siw_get_trailer} checks the CRC after {@code siw_proc_send} placed the
 * segment, raises no async event, and {@code siw_tcp_rx_data} runs {@code siw_rdmap_complete(qp, -EINVAL)}, which
 * completes the receive with GENERAL_ERR and the bytes placed, then drops the connection
 * ({@code siw_qp_cm_drop(qp, 1)}: CLOSE alone, the QP in ERR).
 */
@Timeout(60)
class SiwWireTest {
    private final SiwHosts h = new SiwHosts(43, 44);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    /** An FPDU of an untagged Send segment, CRC32C little-endian at the end. */
    private static byte[] sendFpdu(int msn, byte[] payload) {
        int ulpdu = 18 + payload.length;
        int pad = (4 - ((ulpdu + 2) % 4)) % 4;
        ByteBuffer b = ByteBuffer.allocate(2 + ulpdu + pad + 4);
        b.putShort((short) ulpdu);
        b.put((byte) 0x41).put((byte) 0x43); // DDP: last, version 1; RDMAP: version 1, Send
        b.putInt(0).putInt(0).putInt(msn).putInt(0); // Invalidate STag, QN 0, MSN, MO 0
        b.put(payload);
        b.position(b.position() + pad);
        CRC32C crc = new CRC32C();
        crc.update(b.array(), 0, b.position());
        int c = (int) crc.getValue();
        b.put((byte) c).put((byte) (c >>> 8)).put((byte) (c >>> 16)).put((byte) (c >>> 24));
        return b.array();
    }

    @Test
    void aPeerFromTheRfcsIsUnderstoodAndABadCrcIsTerminated() throws IOException {
        QueuePair qb = h.b.rc();
        qb.postRecv(List.of(RecvWr.of(1, h.b.sge(0, 64)), RecvWr.of(2, h.b.sge(64, 64))));
        try (IwListen l = h.b.cm.listen(new InetSocketAddress(h.b.address, 0), 1, h.b.events::add);
             Socket s = new Socket(l.local().getAddress(), l.local().getPort())) {
            OutputStream out = s.getOutputStream();
            DataInputStream in = new DataInputStream(s.getInputStream());
            ByteBuffer req = ByteBuffer.allocate(20 + 2);
            req.put("MPA ID Req Frame".getBytes(StandardCharsets.US_ASCII)).put((byte) 0x40).put((byte) 1)
                    .putShort((short) 2).put((byte) 0x11).put((byte) 0x22);
            out.write(req.array());
            IwCmEvent r = h.b.event();
            assertEquals(IwCmEvent.Type.CONNECT_REQUEST, r.type());
            assertArrayEquals(new byte[]{0x11, 0x22}, r.privateData());
            r.request().accept(qb.qpNum(), new IwConnParam(null, 1, 1), h.b.events::add);
            byte[] rep = new byte[20];
            in.readFully(rep);
            assertEquals("MPA ID Rep Frame", new String(rep, 0, 16, StandardCharsets.US_ASCII));
            assertEquals(0x40, rep[16] & 0xff, "CRC on, no markers, accepted");
            assertEquals(1, rep[17], "revision 1");
            assertEquals(0, ByteBuffer.wrap(rep).getShort(18), "no private data");
            SiwHosts.expect(h.b.event(), IwCmEvent.Type.ESTABLISHED);

            out.write(sendFpdu(1, "abcdefgh".getBytes(StandardCharsets.US_ASCII)));
            WorkCompletion got = SiwHosts.one(h.b.cq);
            assertEquals(WcStatus.SUCCESS, got.status(), got.toString());
            assertEquals(8, got.byteLen());
            assertArrayEquals("abcdefgh".getBytes(StandardCharsets.US_ASCII), h.b.read(0, 8));

            byte[] bad = sendFpdu(2, "vwxyz".getBytes(StandardCharsets.US_ASCII));
            bad[bad.length - 1] ^= 0x01;
            out.write(bad);
            byte[] term = readFpdu(in);
            assertEquals(22, term.length - 2 - 4, "an 18-byte untagged header and the 4-byte control");
            ByteBuffer t = ByteBuffer.wrap(term);
            assertEquals(22, t.getShort(0));
            assertEquals(0x41, term[2] & 0xff, "DDP: untagged, last, version 1");
            assertEquals(0x47, term[3] & 0xff, "RDMAP: version 1, Terminate");
            assertEquals(2, t.getInt(8), "queue 2");
            assertEquals(1, t.getInt(12), "the first TERMINATE: MSN 1");
            assertEquals(0x20, term[20] & 0xff, "layer LLP (2), error type MPA (0)");
            assertEquals(0x02, term[21] & 0xff, "MPA CRC error");
            CRC32C crc = new CRC32C();
            crc.update(term, 0, term.length - 4);
            assertEquals((int) crc.getValue(), ByteBuffer.wrap(term, term.length - 4, 4)
                    .order(ByteOrder.LITTLE_ENDIAN).getInt(), "its CRC32C");
            assertEquals(-1, in.read(), "siw closed its half after the TERMINATE");
        }
        WorkCompletion failed = SiwHosts.one(h.b.cq);
        assertEquals(List.of(2L, WcStatus.GENERAL_ERR, 5L), List.of(failed.wrId(), failed.status(), failed.byteLen()),
                "siw_rdmap_complete: the receive the corrupt segment went into ends with GENERAL_ERR");
        assertArrayEquals("vwxyz".getBytes(StandardCharsets.US_ASCII), h.b.read(64, 5),
                "placed before the trailer was checked");
        SiwTerminateTest.closedAfterItsTerminate(h.b, qb);
    }

    private static byte[] readFpdu(DataInputStream in) throws IOException {
        int ulpdu = in.readUnsignedShort();
        int pad = (4 - ((ulpdu + 2) % 4)) % 4;
        byte[] f = new byte[2 + ulpdu + pad + 4];
        f[0] = (byte) (ulpdu >>> 8);
        f[1] = (byte) ulpdu;
        in.readFully(f, 2, f.length - 2);
        return f;
    }
}
