package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The RC rules of IBTA 9.7 ({@code rxe_req.c}, {@code rxe_resp.c}, {@code rxe_comp.c}) between two machines over
 * the UDP transport, with the transport losing every {@code n}th datagram or swapping consecutive pairs: PSN
 * sequence NAKs and go-back-N retransmission, timeouts, duplicate reads and atomics answered from the responder's
 * resources, RNR NAKs and their timer; every message completes once, in order, with every byte checked.
 */
@Timeout(120)
@ParameterizedClass(name = "native sendmmsg/recvmmsg {0}")
@ValueSource(booleans = {true, false})
class UdpRcTest {
    private final UdpHcas u;

    UdpRcTest(boolean nativeSocket) {
        this.u = new UdpHcas(11, 12, nativeSocket);
    }

    @AfterEach
    void close() {
        u.close();
        assertEquals(0, Hcas.softroceThreads());
    }

    private static long longOf(byte[] b) {
        return MemorySegment.ofArray(b).get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
    }

    private long counter(boolean a, String name) {
        return (a ? u.ca : u.cb).device("rxe0").orElseThrow().hwCounters(1).get(name);
    }

    /** Writes, reads, sends and atomics on {@code p}, checked: whatever the transport loses or reorders. */
    private void workload(QueuePair[] p) {
        byte[] data = Hcas.random(64 * 1024, 31);
        u.a.write(0, data);
        u.b.write(3 << 20, new byte[8]);
        p[1].postRecv(List.of(RecvWr.of(1, u.b.sge(1 << 20, 8192)), RecvWr.of(2, u.b.sge((1 << 20) + 8192, 8192))));
        List<SendWr> wrs = new ArrayList<>();
        wrs.add(new SendWr.RdmaWrite(1, List.of(u.a.sge(0, data.length)), SIGNALED, u.b.buf, u.b.mr.rkey()));
        wrs.add(new SendWr.Send(2, List.of(u.a.sge(0, 5000)), SIGNALED, null));
        wrs.add(new SendWr.RdmaRead(3, List.of(u.a.sge(1 << 20, data.length)), SIGNALED, u.b.buf, u.b.mr.rkey()));
        for (int i = 0; i < 5; i++) {
            wrs.add(new SendWr.AtomicFetchAndAdd(4 + i, List.of(u.a.sge((2 << 20) + 8L * i, 8)), SIGNALED,
                    u.b.buf + (3 << 20), u.b.mr.rkey(), 1));
        }
        wrs.add(new SendWr.RdmaWriteWithImm(9, List.of(u.a.sge(0, 3000)), SIGNALED, u.b.buf + (2 << 20),
                u.b.mr.rkey(), 99));
        p[0].postSend(wrs);
        List<WorkCompletion> wc = Hcas.poll(u.a.cq, wrs.size());
        assertEquals(List.of(1L, 2L, 3L, 4L, 5L, 6L, 7L, 8L, 9L), wc.stream().map(WorkCompletion::wrId).toList(),
                "once each, in order");
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        assertEquals(2, Hcas.poll(u.b.cq, 2).size());
        assertArrayEquals(data, u.b.read(0, data.length));
        assertArrayEquals(data, u.a.read(1 << 20, data.length), "the read");
        assertArrayEquals(Arrays.copyOf(data, 5000), u.b.read(1 << 20, 5000), "the send");
        assertArrayEquals(Arrays.copyOf(data, 3000), u.b.read(2 << 20, 3000), "the write with immediate");
        assertEquals(5, longOf(u.b.read(3 << 20, 8)), "each fetch-and-add ran once");
        for (int i = 0; i < 5; i++) {
            assertEquals(i, longOf(u.a.read((2 << 20) + 8 * i, 8)), "fetch-and-add " + i + " saw " + i);
        }
    }

    @Test
    void everySeventhDatagramLostBothWaysIsRecoveredBySequenceNaksTimeoutsAndDuplicates() {
        QueuePair[] p = u.pair();
        u.udpA().dropEvery = 7;
        u.udpB().dropEvery = 5; // acknowledgements, read responses and atomic ACKs are lost too
        workload(p);
        assertTrue(u.udpA().dropped.get() > 0 && u.udpB().dropped.get() > 0);
        assertTrue(counter(false, "out_of_seq_request") > 0, "the responder NAKed a PSN gap");
        assertTrue(counter(true, "rcvd_seq_err") > 0, "the requester saw the sequence NAK");
        assertTrue(counter(true, "completer_retry_err") > 0, "and retransmitted");
        assertTrue(counter(false, "duplicate_request") > 0, "the responder saw duplicates");
    }

    @Test
    void swappedPairsOfRequestsAreSortedOutBySequenceNaks() {
        QueuePair[] p = u.pair();
        u.udpA().swapPairs = true;
        workload(p);
        assertTrue(counter(false, "out_of_seq_request") > 0, "reordered requests were NAKed");
    }

    @Test
    void swappedPairsOfResponsesAreSortedOut() {
        QueuePair[] p = u.pair();
        u.udpB().swapPairs = true;
        workload(p);
        assertTrue(counter(true, "completer_retry_err") > 0, "a response seen missing asked for the rest again");
    }

    /**
     * {@code rxe_comp.c} {@code check_psn} between the machines: the responder's READ responses are lost (only
     * they), so the first thing back is the ACK of the WRITE behind the READ, past the READ's last PSN; the
     * completer retries the READ from there ({@code COMPST_ERROR_RETRY}, one retry of {@code retry_cnt}), not the
     * transport timer (a second here, and it never fires), and the READ's bytes arrive from the retry.
     */
    @Test
    void anAckPastAReadWhoseResponsesWereLostRetriesTheReadAtOnce() {
        QueuePair qa = u.a.rc();
        QueuePair qb = u.b.rc();
        Hcas.connect(qa, qb.qpNum(), u.b.gid, Hcas.ALL, 7, 1, 0x100, 24);
        Hcas.connect(qb, qa.qpNum(), u.a.gid, Hcas.ALL, 7, 1, 0x100, 24);
        byte[] data = Hcas.random(4096, 29);
        u.b.write(0, data);
        AtomicInteger left = new AtomicInteger(4); // the READ's four responses at MTU 1024, the first time
        u.udpB().loss = pk -> pk.op() == Packet.Op.READ_RESP && left.getAndDecrement() > 0;
        qa.postSend(List.of(new SendWr.RdmaRead(1, List.of(u.a.sge(0, 4096)), SIGNALED, u.b.buf, u.b.mr.rkey()),
                new SendWr.RdmaWrite(2, List.of(u.a.sge(8192, 64)), SIGNALED, u.b.buf + 8192, u.b.mr.rkey())));
        List<WorkCompletion> wc = Hcas.poll(u.a.cq, 2);
        assertEquals(List.of(1L, 2L), wc.stream().map(WorkCompletion::wrId).toList());
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        assertArrayEquals(data, u.a.read(0, 4096));
        assertEquals(4, u.udpB().dropped.get());
        assertEquals(1, counter(true, "completer_retry_err"));
        assertEquals(0, counter(true, "dmaplane_transport_timeouts"), "the ACK started the retry, not the timer");
    }

    /**
     * The receive thread hands a burst to the engine with each payload still in the socket's receive slot
     * ({@code rxe_rcv} works on the skb it was given); when another thread runs the engine, the burst waits in the
     * engine's inbox, so it must be copied off first: the socket reuses its slots at the next receive. With the
     * responder's engine held by this thread, 64 KiB of writes arrive and are stored (more than the slots hold); once
     * it is let go, every byte is where it was written.
     */
    @Test
    void burstsThatArriveWhileTheEngineIsBusyAreCopiedOffTheReceiveSlots() {
        QueuePair[] p = u.pair();
        byte[] data = Hcas.random(256 * 1024, 17);
        u.a.write(0, data);
        Engine e = u.engineB();
        long stored = e.counters.burstsStored.get();
        List<SendWr> wrs = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            wrs.add(new SendWr.RdmaWrite(i, List.of(u.a.sge(64L * 1024 * i, 64 * 1024)), SIGNALED,
                    u.b.buf + 64L * 1024 * i, u.b.mr.rkey()));
        }
        e.lock.lock(); // rxe0 of b is busy: what reaches it now is stored
        try {
            p[0].postSend(wrs);
            eventually(() -> e.counters.burstsStored.get() - stored >= 2, Duration.ofSeconds(30),
                    "the receive thread stored bursts while the engine was busy");
        } finally {
            e.release(); // as the engine's own code lets it go: the holder runs what was stored meanwhile
        }
        List<WorkCompletion> wc = Hcas.poll(u.a.cq, wrs.size());
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        assertArrayEquals(data, u.b.read(0, data.length));
    }

    /**
     * Both directions reordered at once: duplicates of writes are acknowledged with PSNs that cover the READ in
     * flight, which must not stand in for its responses ({@link RetransmissionTest}, the same rule in-process).
     */
    @Test
    void swappedPairsBothWaysAreSortedOut() {
        QueuePair[] p = u.pair();
        u.udpA().swapPairs = true;
        u.udpB().swapPairs = true;
        workload(p);
        assertTrue(counter(false, "out_of_seq_request") > 0, "reordered requests were NAKed");
    }

    /**
     * rxe_req.c's window: a requester starts no message while {@code RXE_MAX_UNACKED_PSNS} (128) PSNs it sent are
     * unacknowledged, so that a burst never overflows the receiver's socket buffer. Four 64 KiB writes at MTU 1024
     * are 256 PSNs; with the responder's carrier down (nothing is acknowledged) only the first two (128 datagrams)
     * leave, and once the carrier is back the transport timer's retransmission lets all four complete, in order.
     */
    @Test
    void aRequesterSendsNoMoreThanTheWindowOfUnacknowledgedPsns() {
        QueuePair qa = u.a.rc();
        QueuePair qb = u.b.rc();
        Hcas.connect(qa, qb.qpNum(), u.b.gid, Hcas.ALL, 7, 7, 0x100, 16);
        Hcas.connect(qb, qa.qpNum(), u.a.gid, Hcas.ALL, 7, 7, 0x100, 16);
        byte[] data = Hcas.random(64 * 1024, 5);
        u.a.write(0, data);
        u.db.carrier("rxe0", "down");
        List<SendWr> wrs = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            wrs.add(new SendWr.RdmaWrite(i, List.of(u.a.sge(0, data.length)), SIGNALED, u.b.buf + (long) i * data.length,
                    u.b.mr.rkey()));
        }
        qa.postSend(wrs);
        assertEquals(UdpTransport.MAX_UNACKED_PSNS, u.udpA().sent.get(), "two messages of 64 packets, no more");
        u.db.carrier("rxe0", "up");
        List<WorkCompletion> wc = Hcas.poll(u.a.cq, 4);
        assertEquals(List.of(0L, 1L, 2L, 3L), wc.stream().map(WorkCompletion::wrId).toList());
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        for (int i = 0; i < 4; i++) {
            assertArrayEquals(data, u.b.read((long) i * data.length, data.length), "write " + i);
        }
    }

    @Test
    void anRnrNakOverUdpWaitsForTheTimerAndTheSendLandsOnceAReceiveIsPosted() {
        QueuePair[] p = u.pair();
        u.a.write(0, "hello over udp".getBytes());
        p[0].postSend(new SendWr.Send(1, List.of(u.a.sge(0, 14)), SIGNALED, null));
        eventually(() -> counter(false, "send_rnr_err") >= 2, Duration.ofSeconds(10), "RNR NAKs from the responder");
        assertTrue(u.a.cq.poll(1).isEmpty(), "the send waits");
        p[1].postRecv(RecvWr.of(7, u.b.sge(0, 64)));
        assertTrue(Hcas.one(u.a.cq).isSuccess());
        WorkCompletion r = Hcas.one(u.b.cq);
        assertEquals(7, r.wrId());
        assertEquals(14, r.byteLen());
        assertArrayEquals("hello over udp".getBytes(), u.b.read(0, 14));
        assertTrue(counter(true, "rcvd_rnr_err") >= 2);
    }
}
