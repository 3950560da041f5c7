package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Several connections driven by their own threads at once, in both directions, through the two engines: sends
 * with receive slots of their own and RDMA writes, every byte checked, receives in posting order per QP. Half the
 * connections send from rxe0 to rxe1, half the other way, so that threads running one engine deliver to the other
 * while another thread runs it (work queued for the holder, which runs it as it lets the engine go).
 */
@Timeout(60)
class ConcurrencyTest extends HcaTestBase {
    private static final int PAIRS = 4;
    private static final int MSGS = 300;
    private static final int LEN = 256;

    private static byte[] msg(int pair, int i) {
        byte[] b = new byte[LEN];
        Arrays.fill(b, (byte) (pair * 31 + i));
        b[0] = (byte) pair;
        b[1] = (byte) i;
        b[2] = (byte) (i >> 8);
        return b;
    }

    /** Even connections go from rxe0 to rxe1, odd ones back. */
    private Hcas.Host from(int pair) {
        return pair % 2 == 0 ? h.a : h.b;
    }

    private Hcas.Host to(int pair) {
        return pair % 2 == 0 ? h.b : h.a;
    }

    @Test
    void fourConnectionsWithTheirOwnThreadsMoveEveryByte() throws Exception {
        ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();
        List<Thread> threads = new ArrayList<>();
        long srcBase = 0;
        long recvBase = 1L << 20;
        long writeBase = 2L << 20;
        for (int k = 0; k < PAIRS; k++) {
            for (int i = 0; i < MSGS; i++) {
                from(k).write(srcBase + ((long) k * MSGS + i) * LEN, msg(k, i));
            }
        }
        for (int k = 0; k < PAIRS; k++) {
            int pair = k;
            Hcas.Host src = from(k);
            Hcas.Host dst = to(k);
            CompletionQueue scq = src.ctx.createCq(1024, null, 0);
            CompletionQueue rcq = dst.ctx.createCq(1024, null, 0);
            QueuePair qa = src.pd.createQp(new QpInitAttr(scq, scq, null, new QpCap(64, 4, 2, 2, 0), QpType.RC, false));
            QueuePair qb = dst.pd.createQp(new QpInitAttr(rcq, rcq, null, new QpCap(4, MSGS, 2, 2, 0), QpType.RC, false));
            Hcas.connect(qa, qb, dst.gid, Hcas.ALL, 7, 7);
            Hcas.connect(qb, qa, src.gid, Hcas.ALL, 7, 7);
            Thread t = new Thread(() -> {
                try {
                    List<RecvWr> recvs = new ArrayList<>();
                    for (int i = 0; i < MSGS; i++) {
                        recvs.add(RecvWr.of(i, dst.sge(recvBase + ((long) pair * MSGS + i) * LEN, LEN)));
                    }
                    qb.postRecv(recvs);
                    int posted = 0;
                    int done = 0;
                    long deadline = System.nanoTime() + 30_000_000_000L;
                    while (done < 2 * MSGS) {
                        assertTrue(System.nanoTime() < deadline, "pair " + pair + " stalled at " + done);
                        while (posted < 2 * MSGS && posted - done < 60) {
                            int i = posted / 2;
                            long at = srcBase + ((long) pair * MSGS + i) * LEN;
                            SendWr wr = posted % 2 == 0
                                    ? new SendWr.Send(posted, List.of(src.sge(at, LEN)), SIGNALED, null)
                                    : new SendWr.RdmaWrite(posted, List.of(src.sge(at, LEN)), SIGNALED,
                                    dst.buf + writeBase + ((long) pair * MSGS + i) * LEN, dst.mr.rkey());
                            qa.postSend(wr);
                            posted++;
                        }
                        for (WorkCompletion wc : scq.poll(64)) {
                            assertTrue(wc.isSuccess(), wc.toString());
                            assertEquals(done, wc.wrId(), "send completions in order");
                            done++;
                        }
                    }
                    List<WorkCompletion> r = new ArrayList<>();
                    while (r.size() < MSGS) {
                        assertTrue(System.nanoTime() < deadline, "receives of pair " + pair);
                        r.addAll(rcq.poll(64));
                    }
                    for (int i = 0; i < MSGS; i++) {
                        assertEquals(i, r.get(i).wrId());
                        assertEquals(WcOpcode.RECV, r.get(i).opcode());
                        assertEquals(LEN, r.get(i).byteLen());
                    }
                } catch (Throwable e) {
                    failures.add(e);
                }
            }, "pair-" + k);
            threads.add(t);
        }
        threads.forEach(Thread::start);
        for (Thread t : threads) {
            t.join(40_000);
            assertTrue(!t.isAlive(), t.getName() + " finished");
        }
        assertTrue(failures.isEmpty(), failures.toString());
        for (int k = 0; k < PAIRS; k++) {
            for (int i = 0; i < MSGS; i++) {
                long slot = ((long) k * MSGS + i) * LEN;
                assertArrayEquals(msg(k, i), to(k).read(recvBase + slot, LEN), "send " + k + "/" + i);
                assertArrayEquals(msg(k, i), to(k).read(writeBase + slot, LEN), "write " + k + "/" + i);
            }
        }
    }

    @Test
    void destroyingQpsWithWorkInFlightStopsTheirUseCleanly() {
        for (int round = 0; round < 20; round++) {
            QueuePair[] p = h.pair();
            List<SendWr> wrs = new ArrayList<>();
            for (int i = 0; i < 32; i++) {
                wrs.add(new SendWr.RdmaWrite(i, List.of(h.a.sge(0, 65536)), SIGNALED, h.b.buf + 65536L * i, h.b.mr.rkey()));
                wrs.add(new SendWr.RdmaRead(100 + i, List.of(h.a.sge(1 << 21, 4096)), SIGNALED, h.b.buf, h.b.mr.rkey()));
            }
            p[0].postSend(wrs);
            if (round % 2 == 0) {
                p[0].destroy(); // the requester goes
                p[1].destroy();
            } else {
                p[1].destroy(); // the responder goes first: the requester retries, then is destroyed
                p[0].destroy();
            }
            h.a.cq.poll(4096);
        }
        assertEquals(List.of(), h.crashes());
        QueuePair[] p = h.pair();
        h.a.write(0, "still fine".getBytes());
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 10)), SIGNALED, h.b.buf + 500, h.b.mr.rkey()));
        assertTrue(Hcas.one(h.a.cq).isSuccess());
        assertArrayEquals("still fine".getBytes(), h.b.read(500, 10));
    }
}
