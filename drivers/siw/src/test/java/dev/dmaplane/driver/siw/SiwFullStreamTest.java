package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.DataInputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A peer that stops reading does not stall the device's other connections, and its stream resumes where it stopped:
 * siw sends with {@code MSG_DONTWAIT} ({@code siw_tcp_sendpages}, {@code siw_0copy_tx} in {@code siw_qp_tx.c}),
 * leaves what TCP would not take in the QP's TX context, and resumes from the socket's write space
 * ({@code siw_qp_llp_write_space} → {@code siw_sq_start} → {@code siw_sq_resume}); a SEND or WRITE completes once
 * TCP took its last byte (RFC 5040 section 5: iWARP acknowledges nothing).
 */
@Timeout(60)
class SiwFullStreamTest {
    private static final int MIB = 1 << 20;
    private static final int WRITES = 32;
    private static final int STAG = 0x1234;
    private static final long TO = 0x7000_0000L;

    private final SiwHosts h = new SiwHosts(59, 60);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    /**
     * 32 WRITEs of 1 MiB to a raw peer that does not read fill TCP's buffers (a 64 KiB receive buffer, at most 4 MiB
     * of send buffer): they stop completing. Meanwhile another QP of the same device moves a 1 MiB WRITE and a SEND
     * to a second machine with every byte checked. Then the raw peer reads the stream: every FPDU has a good CRC,
     * every tagged segment continues where the one before ended, every payload byte is the source's, and all 32
     * WRITEs complete in order.
     */
    @Test
    void aPeerThatStopsReadingStallsOnlyItsOwnConnection() throws Exception {
        h.da.providers.get("siw0").mpa(Mpa.REVISION_1, false); // the raw peer speaks revision 1
        byte[] data = SiwHosts.random(MIB, 61);
        h.a.write(0, data);
        CompletionQueue stalledCq = h.a.ctx.createCq(256, null, 0);
        QueuePair stalled = h.a.pd.createQp(new QpInitAttr(stalledCq, stalledCq, null, new QpCap(256, 16, 6, 6, 64),
                QpType.RC, false));
        stalled.modify(QpAttr.builder().state(QpState.INIT).accessFlags(SiwHosts.ALL).build());
        stalled.modify(QpAttr.builder().state(QpState.RTR).build());

        try (ServerSocket server = new ServerSocket()) {
            server.setReceiveBufferSize(64 << 10); // fixed: no receive buffer autotuning on the accepted socket
            server.bind(new InetSocketAddress(h.b.address, 0), 1);
            h.a.cm.connect(stalled.qpNum(), (InetSocketAddress) server.getLocalSocketAddress(),
                    new IwConnParam(null, 1, 1), h.a.events::add);
            try (Socket s = server.accept()) {
                s.setSoTimeout((int) SiwHosts.WAIT.toMillis());
                DataInputStream in = new DataInputStream(s.getInputStream());
                in.readFully(new byte[Mpa.RR_HDR]);
                s.getOutputStream().write(Mpa.frame(true, false, Mpa.REVISION_1, null, new byte[0]));
                SiwHosts.expect(h.a.event(), IwCmEvent.Type.CONNECT_REPLY);

                List<SendWr> writes = new ArrayList<>();
                for (int i = 0; i < WRITES; i++) {
                    writes.add(new SendWr.RdmaWrite(i, List.of(h.a.sge(0, MIB)), SIGNALED, TO + (long) i * MIB,
                            STAG));
                }
                stalled.postSend(writes); // returns: a post never waits for the peer

                QueuePair[] p = h.pair();
                p[1].postRecv(List.of(RecvWr.of(1, h.b.sge(2 * MIB, 64))));
                p[0].postSend(List.of(
                        new SendWr.RdmaWrite(100, List.of(h.a.sge(0, MIB)), SIGNALED, h.b.buf, h.b.mr.rkey()),
                        new SendWr.Send(101, List.of(h.a.sge(7, 9)), SIGNALED, null)));
                List<WorkCompletion> r = SiwHosts.poll(h.b.cq, 1);
                assertEquals(WcOpcode.RECV, r.getFirst().opcode(), r.toString());
                assertArrayEquals(data, h.b.read(0, MIB), "the other connection's WRITE arrived");
                assertArrayEquals(Arrays.copyOfRange(data, 7, 16), h.b.read(2 * MIB, 9));
                List<WorkCompletion> mine = SiwHosts.poll(h.a.cq, 2);
                assertEquals(List.of(100L, 101L), mine.stream().map(WorkCompletion::wrId).toList());
                int early = stalledCq.poll(WRITES).size();
                assertTrue(early < WRITES, "TCP cannot hold 32 MiB for a peer that does not read: " + early
                        + " completed");

                long expectTo = TO;
                ByteBuffer f = ByteBuffer.allocate(1 << 17);
                while (expectTo < TO + (long) WRITES * MIB) {
                    int ulpdu = in.readUnsignedShort();
                    int len = Mpa.fpduLength(ulpdu);
                    f.clear().putShort(0, (short) ulpdu);
                    in.readFully(f.array(), 2, len - 2);
                    assertTrue(Mpa.crcOk(f, 0, len), "CRC of the FPDU at tagged offset " + expectTo);
                    Iwarp.Segment seg = Iwarp.parse(f, 2, ulpdu);
                    assertTrue(seg.tagged(), seg.toString());
                    assertEquals(Iwarp.OP_WRITE, seg.opcode());
                    assertEquals(STAG, seg.stag());
                    assertEquals(expectTo, seg.to(), "segments follow each other");
                    int srcOff = (int) ((expectTo - TO) % MIB);
                    byte[] payload = new byte[seg.payloadLength()];
                    f.get(seg.payloadAt(), payload);
                    assertArrayEquals(Arrays.copyOfRange(data, srcOff, srcOff + payload.length), payload,
                            "payload at tagged offset " + expectTo);
                    expectTo += payload.length;
                    assertEquals(((expectTo - TO) % MIB) == 0, seg.last(), "the last segment of each message");
                }
                List<WorkCompletion> rest = SiwHosts.poll(stalledCq, WRITES - early);
                assertTrue(rest.stream().allMatch(WorkCompletion::isSuccess), rest.toString());
                assertEquals(WRITES - 1, rest.getLast().wrId(), "in queue order, the last one last");
                assertEquals(WcStatus.SUCCESS, rest.getLast().status());
            }
        }
    }
}
