package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Data between two machines over siw on the loopback's TCP (RFC 5040 sections 5.1 to 5.3 for Send, RDMA Write and
 * RDMA Read; {@code siw_qp_tx.c}, {@code siw_qp_rx.c}): a 1 MiB SEND into a posted receive over many DDP segments,
 * a 1 MiB RDMA WRITE, a 1 MiB RDMA READ (its response a tagged write into the sink), every byte checked; and a peer
 * that closes its socket ends the other QP with a flush ({@code siw_qp_cm_drop}, {@code siw_sk_state_change}).
 */
@Timeout(60)
class SiwDataTest {
    private final SiwHosts h = new SiwHosts(31, 32);

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, SiwHosts.siwThreads(), "no TX, receive or listener thread left");
    }

    @Test
    void sendWriteAndReadOfAMebibyteCrossTheLoopbackWithEveryByteChecked() {
        QueuePair[] p = h.pair();
        assertEquals(QpState.RTS, p[0].query().qpState(), "the connection moved the active QP to RTS");
        assertEquals(QpState.RTS, p[1].query().qpState(), "the accept moved the passive QP to RTS");
        byte[] data = SiwHosts.random(1 << 20, 41);
        h.a.write(0, data);

        p[1].postRecv(List.of(RecvWr.of(1, h.b.sge(1 << 20, 1 << 20)), RecvWr.of(2, h.b.sge(3 << 20, 64))));
        p[0].postSend(new SendWr.Send(1, List.of(h.a.sge(0, data.length)), SIGNALED, null));
        p[0].postSend(new SendWr.Send(2, List.of(h.a.sge(5, 10)), SIGNALED, null));
        List<WorkCompletion> r = SiwHosts.poll(h.b.cq, 2);
        assertEquals(WcOpcode.RECV, r.get(0).opcode());
        assertEquals(data.length, r.get(0).byteLen(), r.toString());
        assertEquals(10, r.get(1).byteLen());
        assertArrayEquals(data, h.b.read(1 << 20, data.length), "1 MiB sent into the posted receive");
        assertArrayEquals(Arrays.copyOfRange(data, 5, 15), h.b.read(3 << 20, 10));
        assertTrue(SiwHosts.poll(h.a.cq, 2).stream().allMatch(WorkCompletion::isSuccess));

        p[0].postSend(new SendWr.RdmaWrite(3, List.of(h.a.sge(0, data.length)), SIGNALED, h.b.buf, h.b.mr.rkey()));
        WorkCompletion w = SiwHosts.one(h.a.cq);
        assertEquals(WcStatus.SUCCESS, w.status());
        assertEquals(WcOpcode.RDMA_WRITE, w.opcode());
        // a WRITE completes once TCP has it: a READ behind it sees it, as the responder serves in order
        p[0].postSend(new SendWr.RdmaRead(4, List.of(h.a.sge(2 << 20, data.length)), SIGNALED, h.b.buf,
                h.b.mr.rkey()));
        WorkCompletion rd = SiwHosts.one(h.a.cq);
        assertEquals(WcStatus.SUCCESS, rd.status(), rd.toString());
        assertEquals(WcOpcode.RDMA_READ, rd.opcode());
        assertArrayEquals(data, h.b.read(0, data.length), "1 MiB written into the other machine");
        assertArrayEquals(data, h.a.read(2 << 20, data.length), "1 MiB read back");
    }

    /**
     * {@code siw_post_send} sends directly when the send queue is idle: the poster runs the transmit engine
     * ({@code siw_qp_sq_process}) itself, and a SEND that TCP takes at once is complete when the post returns (RFC
     * 5040 section 5: iWARP acknowledges nothing), without a hand-over to the TX thread. A hundred times in a row,
     * each SEND's bytes checked at the receiver. (The first SEND is waited for: until the receive thread made the
     * new stream non-blocking, the TX thread sends.)
     */
    @Test
    void aSendOnAnIdleQueueIsCompleteWhenThePostReturns() {
        QueuePair[] p = h.pair();
        byte[] data = SiwHosts.random(100 * 64, 47);
        h.a.write(0, data);
        for (int i = 0; i < 100; i++) {
            p[1].postRecv(List.of(RecvWr.of(i, h.b.sge(1 << 20 | i * 64, 64))));
        }
        p[0].postSend(new SendWr.Send(0, List.of(h.a.sge(0, 64)), SIGNALED, null));
        assertEquals(WcStatus.SUCCESS, SiwHosts.one(h.a.cq).status());
        for (int i = 1; i < 100; i++) {
            p[0].postSend(new SendWr.Send(i, List.of(h.a.sge(i * 64, 64)), SIGNALED, null));
            List<WorkCompletion> c = h.a.cq.poll(1);
            assertEquals(1, c.size(), "SEND " + i + " complete when its post returned");
            assertEquals(WcStatus.SUCCESS, c.getFirst().status());
        }
        SiwHosts.poll(h.b.cq, 100);
        assertArrayEquals(data, h.b.read(1 << 20, data.length), "every SEND's bytes in its receive");
    }

    /**
     * A WRITE of three SGEs over many DDP segments, each SGE read through one lease for all of its segments
     * ({@code siw_check_sgl_tx} checks each SGE once per request): segments that start inside one SGE and end in the
     * next, every byte at its place at the sink (RFC 5041 section 4.1: the tagged offset of each segment).
     */
    @Test
    void aWriteOfThreeSgesArrivesWholeWithEveryByteChecked() {
        QueuePair[] p = h.pair();
        byte[] data = SiwHosts.random(1 << 20, 53);
        h.a.write(0, data);
        int[] at = {3, 200_000, 900_001};
        int[] len = {150_001, 400_000, 7};
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(at[0], len[0]), h.a.sge(at[1], len[1]),
                h.a.sge(at[2], len[2])), SIGNALED, h.b.buf + 11, h.b.mr.rkey()));
        WorkCompletion w = SiwHosts.one(h.a.cq);
        assertEquals(WcStatus.SUCCESS, w.status(), w.toString());
        byte[] expected = new byte[len[0] + len[1] + len[2]];
        int o = 0;
        for (int i = 0; i < 3; i++) {
            System.arraycopy(data, at[i], expected, o, len[i]);
            o += len[i];
        }
        // the WRITE completed once TCP took it: a READ behind it sees it placed, as the responder serves in order
        p[0].postSend(new SendWr.RdmaRead(2, List.of(h.a.sge(2 << 20, expected.length)), SIGNALED, h.b.buf + 11,
                h.b.mr.rkey()));
        assertEquals(WcStatus.SUCCESS, SiwHosts.one(h.a.cq).status());
        assertArrayEquals(expected, h.b.read(11, expected.length), "the three SGEs one after the other");
        assertArrayEquals(expected, h.a.read(2 << 20, expected.length), "and read back");
    }

    @Test
    void completionsStayInQueueOrderBehindAnOutstandingRead() {
        QueuePair[] p = h.pair();
        byte[] data = SiwHosts.random(256 << 10, 43);
        h.b.write(0, data);
        p[1].postRecv(List.of(RecvWr.of(9, h.b.sge(1 << 20, 64))));
        p[0].postSend(List.of(
                new SendWr.RdmaRead(1, List.of(h.a.sge(0, data.length)), SIGNALED, h.b.buf, h.b.mr.rkey()),
                new SendWr.Send(2, List.of(h.a.sge(1 << 20, 8)), SIGNALED, null),
                new SendWr.RdmaWrite(3, List.of(h.a.sge(1 << 20, 8)), SIGNALED, h.b.buf + (2 << 20), h.b.mr.rkey())));
        List<WorkCompletion> c = SiwHosts.poll(h.a.cq, 3);
        assertEquals(List.of(1L, 2L, 3L), c.stream().map(WorkCompletion::wrId).toList(), c.toString());
        assertTrue(c.stream().allMatch(WorkCompletion::isSuccess), c.toString());
        assertArrayEquals(data, h.a.read(0, data.length));
    }

    @Test
    void aPeerThatClosesItsSocketEndsTheQpWithAFlush() {
        QueuePair[] p = h.pair();
        p[0].postRecv(List.of(RecvWr.of(7, h.a.sge(0, 64))));
        p[1].postRecv(List.of(RecvWr.of(8, h.b.sge(0, 64))));
        // the passive side's connection goes away with its QP's move to ERR (siw_qp_modify: drop_conn)
        p[1].modify(QpAttr.builder().state(QpState.ERR).build());
        WorkCompletion mine = SiwHosts.one(h.b.cq);
        assertEquals(WcStatus.WR_FLUSH_ERR, mine.status());
        assertEquals(8, mine.wrId());
        SiwHosts.expect(h.b.event(), IwCmEvent.Type.CLOSE);

        WorkCompletion theirs = SiwHosts.one(h.a.cq);
        assertEquals(WcStatus.WR_FLUSH_ERR, theirs.status(), "the peer's close flushed the receive");
        assertEquals(7, theirs.wrId());
        assertEquals(QpState.ERR, p[0].query().qpState());
        IwCmEvent d = h.a.event();
        assertEquals(IwCmEvent.Type.DISCONNECT, d.type());
        assertNull(d.status(), "siw_cm_work_handler's PEER_CLOSE: DISCONNECT with status 0");
        SiwHosts.expect(h.a.event(), IwCmEvent.Type.CLOSE);
    }
}
