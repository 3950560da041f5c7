package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Predicate;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Loss on the fabric and RNR in the middle of pipelined work: PSN sequence NAKs, go-back-N retransmission,
 * duplicate detection at the responder (atomics answered from their saved result, not executed twice), and RC
 * ordering across an RNR wait.
 */
@Timeout(60)
class RetransmissionTest {
    private final Hcas h = new Hcas();

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, Hcas.softroceThreads());
    }

    private static long longOf(byte[] b) {
        return MemorySegment.ofArray(b).get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
    }

    /** Drops the first {@code n} packets {@code which} accepts. */
    private void lose(int n, Predicate<Packet> which) {
        AtomicInteger left = new AtomicInteger(n);
        h.driver.fabric.loss = p -> which.test(p) && left.getAndDecrement() > 0;
    }

    @Test
    void aLostMiddlePacketIsNakedAndResentAndTheDataArrivesWhole() {
        QueuePair[] p = h.pair();
        byte[] data = new byte[5000];
        new Random(9).nextBytes(data);
        h.a.write(0, data);
        lose(1, pk -> pk.op() == Packet.Op.WRITE && !pk.first() && !pk.last());
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 5000)), SIGNALED, h.b.buf + 100, h.b.mr.rkey()));
        p[0].postSend(new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 5000)), SIGNALED, h.b.buf + 10_000, h.b.mr.rkey()));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        assertArrayEquals(data, h.b.read(100, 5000));
        assertArrayEquals(data, h.b.read(10_000, 5000));
        assertEquals(1, h.driver.fabric.dropped.get());
        // the NAK carried the PSN of the lost packet: the requester resumed there, not at the message's start
        assertEquals(1, h.driver.providers.get("rxe0").engine.counters.resentFromMiddle);
    }

    @Test
    void aTimeoutResendsFromTheFirstPacketNoAckCoveredNotFromTheMessagesStart() {
        QueuePair[] p = h.pair();
        byte[] data = new byte[100 * 1024]; // 100 packets: the requester asks for an ACK at packet 64
        new Random(11).nextBytes(data);
        h.a.write(0, data);
        lose(1, pk -> pk.op() == Packet.Op.WRITE && pk.last()); // no NAK follows: only the timer notices
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, data.length)), SIGNALED, h.b.buf, h.b.mr.rkey()));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertArrayEquals(data, h.b.read(0, data.length));
        Engine rxe0 = h.driver.providers.get("rxe0").engine;
        assertTrue(rxe0.counters.retries >= 1);
        assertEquals(1, rxe0.counters.resentFromMiddle, "resumed after the PSN the coalesced ACK covered");
    }

    @Test
    void aLostAtomicAcknowledgementIsAnsweredFromTheSavedResultNotExecutedTwice() {
        QueuePair[] p = h.pair();
        h.b.write(0, new byte[8]);
        lose(1, pk -> pk.op() == Packet.Op.ATOMIC_ACK);
        for (int i = 0; i < 3; i++) {
            p[0].postSend(new SendWr.AtomicFetchAndAdd(i, List.of(h.a.sge(i * 8L, 8)), SIGNALED, h.b.buf, h.b.mr.rkey(), 10));
        }
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 3);
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        assertEquals(30, longOf(h.b.read(0, 8)), "each add ran once");
        assertEquals(0, longOf(h.a.read(0, 8)));
        assertEquals(10, longOf(h.a.read(8, 8)));
        assertEquals(20, longOf(h.a.read(16, 8)));
        assertTrue(h.driver.providers.get("rxe0").engine.counters.retries >= 1, "the requester resent");
    }

    @Test
    void aLostReadResponseIsReadAgain() {
        QueuePair[] p = h.pair();
        byte[] data = new byte[3000];
        new Random(10).nextBytes(data);
        h.b.write(0, data);
        lose(1, pk -> pk.op() == Packet.Op.READ_RESP && pk.last());
        p[0].postSend(new SendWr.RdmaRead(1, List.of(h.a.sge(0, 3000)), SIGNALED, h.b.buf, h.b.mr.rkey()));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertArrayEquals(data, h.a.read(0, 3000));
    }

    @Test
    void aLostMiddleReadResponseIsAskedForAgainWithTheRestOfTheReadOnly() {
        QueuePair[] p = h.pair();
        byte[] data = new byte[10 * 1024]; // ten responses
        new Random(12).nextBytes(data);
        h.b.write(0, data);
        int[] seen = new int[1];
        lose(1, pk -> pk.op() == Packet.Op.READ_RESP && seen[0]++ == 3); // the fourth response
        p[0].postSend(new SendWr.RdmaRead(1, List.of(h.a.sge(0, data.length)), SIGNALED, h.b.buf, h.b.mr.rkey()));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertArrayEquals(data, h.a.read(0, data.length), "no hole where the lost response was");
        Engine rxe0 = h.driver.providers.get("rxe0").engine;
        assertEquals(1, rxe0.counters.resentFromMiddle, "the read was reissued from the missing response on");
        assertEquals(1, h.driver.fabric.dropped.get());
    }

    /**
     * A PSN sequence NAK acknowledges every packet before its PSN (IBTA 9.7.5.1.1; {@code rxe_comp.c} check_ack:
     * "a nak implicitly acks all packets with psns before"), so it is progress: it gives the QP its {@code retry_cnt}
     * back. With {@code retry_cnt} 1 a 64-packet WRITE loses packet 10 and its NAK (a timeout, the one retry
     * used), then packet 20 (its NAK arrives: progress), then, once that NAK went through, packet 30 and its NAK (a
     * second timeout): the write must complete, resuming after the PSN the NAK acknowledged.
     */
    @Test
    void aSequenceNakIsProgressAndGivesTheRetriesBack() {
        QueuePair[] p = h.pair(Hcas.ALL, Hcas.ALL, 7, 1);
        byte[] data = new byte[64 * 1024];
        new Random(14).nextBytes(data);
        h.a.write(0, data);
        int base = 0x100; // Hcas.connect's first PSN
        AtomicInteger step = new AtomicInteger();
        h.driver.fabric.loss = pk -> {
            boolean nak = pk.op() == Packet.Op.ACK && pk.syndrome() == Packet.AETH_NAK_PSN_SEQ;
            boolean write = pk.op() == Packet.Op.WRITE;
            return switch (step.get()) {
                case 0 -> write && pk.psn() == base + 10 && step.compareAndSet(0, 1);
                case 1 -> nak && step.compareAndSet(1, 2);
                case 2 -> write && pk.psn() == base + 20 && step.compareAndSet(2, 3);
                case 3 -> {
                    if (nak) {
                        step.set(4); // packet 20's NAK passes
                    }
                    yield false;
                }
                case 4 -> write && pk.psn() == base + 30 && step.compareAndSet(4, 5);
                case 5 -> nak && step.compareAndSet(5, 6);
                default -> false;
            };
        };
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, data.length)), SIGNALED, h.b.buf, h.b.mr.rkey()));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertArrayEquals(data, h.b.read(0, data.length));
        assertEquals(6, step.get(), "every loss happened");
        assertEquals(0, h.driver.providers.get("rxe0").engine.counters.retryExceeded);
    }

    /**
     * A duplicate WRITE is acknowledged with the last PSN the responder took ({@code rxe_resp.c} duplicate_request:
     * {@code send_ack(qp, AETH_ACK_UNLIMITED, prev_psn)}), which may be a READ's: that ACK completes the WRITE but
     * says nothing about the READ's data, which only its responses bring ({@code rxe_comp.c}). Here the WRITE's
     * ACK and the READ's response are lost, the timeout resends both, and the duplicate's ACK arrives before the
     * READ's new response: the READ must still take it and complete.
     */
    @Test
    void anAckCoveringAReadsPsnDoesNotStandInForItsResponse() {
        QueuePair[] p = h.pair();
        byte[] data = new byte[64];
        new Random(13).nextBytes(data);
        h.b.write(4096, data);
        AtomicInteger acks = new AtomicInteger();
        AtomicInteger responses = new AtomicInteger();
        h.driver.fabric.loss = pk -> (pk.op() == Packet.Op.ACK && acks.getAndIncrement() == 0)
                || (pk.op() == Packet.Op.READ_RESP && responses.getAndIncrement() == 0);
        p[0].postSend(List.of(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 64)), SIGNALED, h.b.buf, h.b.mr.rkey()),
                new SendWr.RdmaRead(2, List.of(h.a.sge(8192, 64)), SIGNALED, h.b.buf + 4096, h.b.mr.rkey())));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertEquals(List.of(WcStatus.SUCCESS, WcStatus.SUCCESS), wc.stream().map(WorkCompletion::status).toList());
        assertArrayEquals(data, h.a.read(8192, 64));
        assertEquals(2, h.driver.fabric.dropped.get());
    }

    @Test
    void workAfterAnRnrNakedSendWaitsForItInOrder() {
        QueuePair[] p = h.pair();
        h.b.write(4096, "before".getBytes());
        h.a.write(0, "after!".getBytes());
        p[0].postSend(List.of(new SendWr.Send(1, List.of(h.a.sge(0, 6)), SIGNALED, null),
                new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 6)), SIGNALED, h.b.buf + 4096, h.b.mr.rkey())));
        Engine responder = h.driver.providers.get("rxe1").engine;
        eventually(() -> responder.counters.rnrNaksSent >= 2, Duration.ofSeconds(5), "the responder RNR-NAKs the send twice");
        assertArrayEquals("before".getBytes(), h.b.read(4096, 6), "the write behind the RNR-NAKed send did not pass it");
        assertTrue(h.a.cq.poll(4).isEmpty());
        p[1].postRecv(RecvWr.of(7, h.b.sge(0, 64)));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertEquals(List.of(1L, 2L), wc.stream().map(WorkCompletion::wrId).toList());
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess));
        assertArrayEquals("after!".getBytes(), h.b.read(4096, 6));
    }
}
