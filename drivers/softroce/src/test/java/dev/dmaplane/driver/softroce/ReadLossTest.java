package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.testing.Verbs;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.LongStream;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * RDMA READs and atomics with many requests in flight through a fabric that loses about 1 % of the packets and
 * swaps neighbours (seeded): the completer starts one retry and no other until the retried responses arrive
 * ({@code rxe_comp.c} {@code check_psn} and {@code comp.started_retry}, {@code rxe_req.c} {@code req_retry}), so
 * reordered responses cost one go-back-N each, not one per response seen out of place; duplicate atomics are
 * answered from the responder's resources ({@code rxe_resp.c} {@code duplicate_request}), never executed twice.
 */
@Timeout(60)
class ReadLossTest {
    /** Reads and atomics a QP keeps in flight, as perftest's {@code read_bw} asks for ({@code max_rd_atomic} 16). */
    private static final int RD_ATOMIC = 16;
    /** How long a run may take: ample for a few dozen retries, far too short for a retry storm. */
    private static final Duration BOUND = Duration.ofSeconds(20);

    private final Hcas h = new Hcas();

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, Hcas.softroceThreads());
    }

    /** Both QPs of an RC pair with {@code max_rd_atomic} and {@code max_dest_rd_atomic} {@link #RD_ATOMIC}. */
    private QueuePair[] pair() {
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        connect(qa, qb.qpNum(), h.b);
        connect(qb, qa.qpNum(), h.a);
        return new QueuePair[]{qa, qb};
    }

    private static void connect(QueuePair qp, int peerQpn, Hcas.Host peer) {
        Verbs.connect(qp, QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1).accessFlags(Hcas.ALL).build(),
                QpAttr.builder().state(QpState.RTR).av(AhAttr.roce(peer.gid, 1, 1)).pathMtu(Mtu.MTU_1024)
                        .destQpn(peerQpn).rqPsn(0x100).maxDestRdAtomic(RD_ATOMIC).minRnrTimer(1).build(),
                QpAttr.builder().state(QpState.RTS).sqPsn(0x100).timeout(14).retryCnt(7).rnrRetry(7)
                        .maxRdAtomic(RD_ATOMIC).build());
    }

    /** Loses one packet in a hundred and swaps one in four with the next of its burst, from {@code seed}. */
    private void lossAndReordering(long seed) {
        Random r = new Random(seed);
        h.driver.fabric.loss = p -> r.nextInt(100) == 0;
        h.driver.fabric.swap = p -> r.nextInt(4) == 0;
    }

    private Engine requester() {
        return h.driver.providers.get("rxe0").engine;
    }

    /**
     * 256 READs of 16 responses each, 16 in flight: before the fix every response seen out of place was thrown
     * away and asked for again with every read behind it, each retry's responses were reordered in turn, and the
     * responder sent 393554 packets for the 4096 responses the reads need (96 times, 9 s); now every byte
     * arrives, in order, for a few times the responses needed.
     */
    @Test
    void manyReadsInFlightThroughLossAndReorderingFinishInOrder() {
        QueuePair[] p = pair();
        int n = 256;
        int size = 16 * 1024;
        byte[] data = Hcas.random(n * size, 41);
        h.b.write(0, data);
        lossAndReordering(7);
        List<SendWr> wrs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            wrs.add(new SendWr.RdmaRead(i, List.of(h.a.sge((long) i * size, size)), SIGNALED,
                    h.b.buf + (long) i * size, h.b.mr.rkey()));
        }
        p[0].postSend(wrs);
        List<WorkCompletion> wc = Verbs.poll(h.a.cq, n, BOUND);
        assertEquals(LongStream.range(0, n).boxed().toList(), wc.stream().map(WorkCompletion::wrId).toList(),
                "once each, in order");
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        assertArrayEquals(data, h.a.read(0, data.length));
        assertTrue(h.driver.fabric.dropped.get() > 0, "the fabric lost packets");
        assertTrue(requester().counters.retries > 0, "and the requester asked again");
        long needed = (long) n * size / 1024;
        long sent = h.driver.providers.get("rxe1").engine.counters.pktsSent.get();
        assertTrue(sent < 10 * needed, "the responder sent " + sent + " packets for " + needed + " responses");
    }

    /**
     * 256 fetch-and-adds of one counter, 16 in flight, through the same loss and reordering: every retried atomic
     * the responder executed already is answered from its saved result, so each add runs once and the original
     * the {@code i}th one returns is {@code i}.
     */
    @Test
    void manyAtomicsInFlightThroughLossAndReorderingRunOnceEach() {
        QueuePair[] p = pair();
        int n = 256;
        h.b.write(0, new byte[8]);
        lossAndReordering(8);
        List<SendWr> wrs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            wrs.add(new SendWr.AtomicFetchAndAdd(i, List.of(h.a.sge(8L * i, 8)), SIGNALED, h.b.buf, h.b.mr.rkey(),
                    1));
        }
        p[0].postSend(wrs.subList(0, n / 2));
        p[0].postSend(wrs.subList(n / 2, n));
        List<WorkCompletion> wc = Verbs.poll(h.a.cq, n, BOUND);
        assertEquals(LongStream.range(0, n).boxed().toList(), wc.stream().map(WorkCompletion::wrId).toList(),
                "once each, in order");
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        assertEquals(n, MemorySegment.ofArray(h.b.read(0, 8)).get(ValueLayout.JAVA_LONG_UNALIGNED, 0),
                "each add ran once");
        MemorySegment orig = MemorySegment.ofArray(h.a.read(0, 8 * n));
        for (int i = 0; i < n; i++) {
            assertEquals(i, orig.getAtIndex(ValueLayout.JAVA_LONG_UNALIGNED, i), "add " + i + " saw " + i);
        }
        assertTrue(h.driver.fabric.dropped.get() > 0, "the fabric lost packets");
        assertTrue(h.driver.providers.get("rxe1").engine.counters.duplicates > 0, "the responder saw duplicates");
    }
}
