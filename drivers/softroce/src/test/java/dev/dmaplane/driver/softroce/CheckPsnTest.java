package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Predicate;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The completer's {@code check_psn} ({@code rxe_comp.c}): a packet whose PSN is past the last PSN of the oldest
 * request in flight, while that request is a READ or an atomic still waiting for its responses, means those
 * responses were lost, since the responder answers in PSN order (IBTA 9.7.5.1.2). rxe answers it with
 * {@code COMPST_ERROR_RETRY}: the packet is dropped and the requester retries from that READ or atomic
 * ({@code req_retry}: a READ for the data it still lacks), one retry counted against {@code retry_cnt}, none
 * started while one is on its way ({@code comp.started_retry}), RETRY_EXC_ERR when none are left. The QPs here
 * have a transport timer of a second, so a test that sees no timeout ({@code dmaplane_transport_timeouts}) saw the
 * completer retry on its own.
 */
@Timeout(60)
class CheckPsnTest {
    private final Hcas h = new Hcas();

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, Hcas.softroceThreads());
    }

    /** Drops the first {@code n} packets {@code which} accepts. */
    private void lose(int n, Predicate<Packet> which) {
        AtomicInteger left = new AtomicInteger(n);
        h.driver.fabric.loss = p -> which.test(p) && left.getAndDecrement() > 0;
    }

    /**
     * An RC pair with {@code retry_cnt} {@code retries} and timeout 24 (4.096 us * 2^24, honoured as the driver's
     * longest, a second): far longer than these exchanges take, so the timer stays out of them.
     */
    private QueuePair[] pair(int retries) {
        return pair(retries, 24);
    }

    private QueuePair[] pair(int retries, int timeout) {
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        Hcas.connect(qa, qb.qpNum(), h.b.gid, Hcas.ALL, 7, retries, 0x100, timeout);
        Hcas.connect(qb, qa.qpNum(), h.a.gid, Hcas.ALL, 7, retries, 0x100, timeout);
        return new QueuePair[] {qa, qb};
    }

    private Engine requester() {
        return h.engine("rxe0");
    }

    private static long longOf(byte[] b) {
        return MemorySegment.ofArray(b).get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
    }

    private static List<WcStatus> statuses(List<WorkCompletion> wc) {
        return wc.stream().map(WorkCompletion::status).toList();
    }

    /**
     * {@code check_psn}: the ACK of a WRITE behind a READ whose three responses were all lost is past the READ's
     * last PSN: the completer retries the READ at once ({@code COMPST_ERROR_RETRY}) rather than waiting for the
     * transport timer; the READ's data arrives whole from the retry, the WRITE (sent again with it, as
     * {@code req_retry} rewinds the send queue) is acknowledged again, both complete in order.
     */
    @Test
    void anAckPastAReadWhoseResponsesWereLostRetriesTheReadAtOnce() {
        QueuePair[] p = pair(1);
        byte[] data = Hcas.random(3000, 21);
        h.b.write(0, data);
        byte[] written = Hcas.random(64, 22);
        h.a.write(8192, written);
        lose(3, pk -> pk.op() == Packet.Op.READ_RESP);
        p[0].postSend(List.of(new SendWr.RdmaRead(1, List.of(h.a.sge(0, 3000)), SIGNALED, h.b.buf, h.b.mr.rkey()),
                new SendWr.RdmaWrite(2, List.of(h.a.sge(8192, 64)), SIGNALED, h.b.buf + 8192, h.b.mr.rkey())));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertEquals(List.of(1L, 2L), wc.stream().map(WorkCompletion::wrId).toList());
        assertEquals(List.of(WcStatus.SUCCESS, WcStatus.SUCCESS), statuses(wc));
        assertArrayEquals(data, h.a.read(0, 3000), "the read's data, from the retry");
        assertArrayEquals(written, h.b.read(8192, 64));
        assertEquals(3, h.driver.fabric.dropped.get());
        assertEquals(1, requester().counters.retries, "one retry");
        assertEquals(0, requester().counters.timeouts, "started by the ACK, not by the transport timer");
    }

    /**
     * {@code check_psn} for an atomic: the ACK of a WRITE behind a fetch-and-add whose acknowledgement was lost
     * retries the atomic at once; the responder answers the duplicate from its saved result ({@code rxe_resp.c}
     * {@code duplicate_request}), so the add runs once and returns the original value.
     */
    @Test
    void anAckPastAnAtomicWhoseAcknowledgementWasLostRetriesItAtOnce() {
        QueuePair[] p = pair(1);
        h.b.write(0, new byte[8]);
        lose(1, pk -> pk.op() == Packet.Op.ATOMIC_ACK);
        p[0].postSend(List.of(
                new SendWr.AtomicFetchAndAdd(1, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey(), 7),
                new SendWr.RdmaWrite(2, List.of(h.a.sge(64, 64)), SIGNALED, h.b.buf + 64, h.b.mr.rkey())));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertEquals(List.of(1L, 2L), wc.stream().map(WorkCompletion::wrId).toList());
        assertEquals(List.of(WcStatus.SUCCESS, WcStatus.SUCCESS), statuses(wc));
        assertEquals(7, longOf(h.b.read(0, 8)), "the add ran once");
        assertEquals(0, longOf(h.a.read(0, 8)), "and its original came back");
        assertEquals(1, requester().counters.retries);
        assertEquals(0, requester().counters.timeouts, "started by the ACK, not by the transport timer");
    }

    /**
     * {@code COMPST_ERROR_RETRY} with {@code retry_cnt} 0: the ACK past a READ whose responses were lost leaves no
     * retry, so the READ ends in RETRY_EXC_ERR there and then ({@code retry_exceeded_err}), without a transport
     * timeout, and the WRITE behind it is flushed.
     */
    @Test
    void anAckPastALostReadWithNoRetriesLeftEndsItInRetryExceeded() {
        QueuePair[] p = pair(0);
        h.b.write(0, Hcas.random(2048, 23));
        lose(Integer.MAX_VALUE, pk -> pk.op() == Packet.Op.READ_RESP);
        p[0].postSend(List.of(new SendWr.RdmaRead(1, List.of(h.a.sge(0, 2048)), SIGNALED, h.b.buf, h.b.mr.rkey()),
                new SendWr.RdmaWrite(2, List.of(h.a.sge(8192, 64)), SIGNALED, h.b.buf + 8192, h.b.mr.rkey())));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertEquals(List.of(1L, 2L), wc.stream().map(WorkCompletion::wrId).toList());
        assertEquals(List.of(WcStatus.RETRY_EXC_ERR, WcStatus.WR_FLUSH_ERR), statuses(wc));
        assertEquals(1, requester().counters.retryExceeded);
        assertEquals(0, requester().counters.retries, "no retry was left");
        assertEquals(0, requester().counters.timeouts, "ended by the ACK, not by the transport timer");
    }

    /**
     * A response of a later READ past a READ that lost its last response: the earlier READ asks for the rest at
     * once ({@code check_psn}'s {@code COMPST_ERROR_RETRY}, {@code req_retry} resuming the READ after the data it
     * has), and both complete with every byte.
     */
    @Test
    void aResponseOfALaterReadAsksForTheEarlierReadsLostResponseAtOnce() {
        QueuePair[] p = pair(1);
        byte[] data = Hcas.random(2048, 14);
        h.b.write(0, data);
        lose(1, pk -> pk.op() == Packet.Op.READ_RESP && pk.last()); // the first READ's last response
        p[0].postSend(List.of(new SendWr.RdmaRead(1, List.of(h.a.sge(0, 2048)), SIGNALED, h.b.buf, h.b.mr.rkey()),
                new SendWr.RdmaRead(2, List.of(h.a.sge(4096, 1024)), SIGNALED, h.b.buf + 1024, h.b.mr.rkey())));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertEquals(List.of(WcStatus.SUCCESS, WcStatus.SUCCESS), statuses(wc));
        assertArrayEquals(data, h.a.read(0, 2048));
        assertArrayEquals(Arrays.copyOfRange(data, 1024, 2048), h.a.read(4096, 1024));
        assertEquals(1, requester().counters.resentFromMiddle, "the READ asked for its second response only");
        assertEquals(0, requester().counters.timeouts, "started by the response, not by the transport timer");
    }

    /**
     * The same with {@code retry_cnt} 0: {@code COMPST_ERROR_RETRY} counts as a timeout's retry does, so the
     * response of the later READ ends the earlier one in RETRY_EXC_ERR at once, and the later READ is flushed.
     */
    @Test
    void aResponsePastALostReadWithNoRetriesLeftEndsItInRetryExceeded() {
        QueuePair[] p = pair(0);
        h.b.write(0, Hcas.random(2048, 15));
        lose(1, pk -> pk.op() == Packet.Op.READ_RESP && pk.last());
        p[0].postSend(List.of(new SendWr.RdmaRead(1, List.of(h.a.sge(0, 2048)), SIGNALED, h.b.buf, h.b.mr.rkey()),
                new SendWr.RdmaRead(2, List.of(h.a.sge(4096, 1024)), SIGNALED, h.b.buf + 1024, h.b.mr.rkey())));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertEquals(List.of(WcStatus.RETRY_EXC_ERR, WcStatus.WR_FLUSH_ERR), statuses(wc));
        assertEquals(1, requester().counters.retryExceeded);
        assertEquals(0, requester().counters.timeouts, "ended by the response, not by the transport timer");
    }

    /**
     * {@code check_psn} for an atomic acknowledgement past a READ whose three responses were lost: the READ is asked
     * for again at once, and the retried atomic is answered from the responder's saved result ({@code rxe_resp.c}
     * {@code duplicate_request}), not executed twice.
     */
    @Test
    void anAtomicAckPastAReadWhoseResponsesWereLostAsksForTheReadAgainAtOnce() {
        QueuePair[] p = pair(1);
        byte[] data = Hcas.random(3000, 13);
        h.b.write(0, data);
        h.b.write(4096, new byte[8]);
        lose(3, pk -> pk.op() == Packet.Op.READ_RESP);
        p[0].postSend(List.of(new SendWr.RdmaRead(1, List.of(h.a.sge(0, 3000)), SIGNALED, h.b.buf, h.b.mr.rkey()),
                new SendWr.AtomicFetchAndAdd(2, List.of(h.a.sge(4096, 8)), SIGNALED, h.b.buf + 4096, h.b.mr.rkey(),
                        5)));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertEquals(List.of(1L, 2L), wc.stream().map(WorkCompletion::wrId).toList());
        assertEquals(List.of(WcStatus.SUCCESS, WcStatus.SUCCESS), statuses(wc));
        assertArrayEquals(data, h.a.read(0, 3000));
        assertEquals(5, longOf(h.b.read(4096, 8)), "the add ran once; its resend was answered from the saved result");
        assertEquals(0, requester().counters.timeouts, "started by the acknowledgement, not by the transport timer");
    }

    /**
     * {@code check_psn} comes before {@code check_ack}: a Remote Access Error NAK for a WRITE behind a READ whose
     * responses were lost is past the READ's last PSN, so rxe drops it and retries the READ; it does not complete
     * the READ with the WRITE's error. The responder went to ERR with that NAK and answers no retry, so the READ
     * ends in RETRY_EXC_ERR once its retry (the NAK's) and the timer's are spent, and the WRITE is flushed.
     */
    @Test
    void aNakPastALostReadRetriesTheReadInsteadOfFailingItWithTheNaksError() {
        QueuePair[] p = pair(1, 14);
        h.b.write(0, Hcas.random(1024, 24));
        lose(Integer.MAX_VALUE, pk -> pk.op() == Packet.Op.READ_RESP);
        p[0].postSend(List.of(new SendWr.RdmaRead(1, List.of(h.a.sge(0, 1024)), SIGNALED, h.b.buf, h.b.mr.rkey()),
                new SendWr.RdmaWrite(2, List.of(h.a.sge(8192, 64)), SIGNALED, h.b.buf + Hcas.BUF - 32,
                        h.b.mr.rkey()))); // past the region's end: REM_ACCESS NAK
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertEquals(List.of(1L, 2L), wc.stream().map(WorkCompletion::wrId).toList());
        assertEquals(List.of(WcStatus.RETRY_EXC_ERR, WcStatus.WR_FLUSH_ERR), statuses(wc));
        assertEquals(1, requester().counters.retries, "the NAK's retry");
        assertEquals(1, requester().counters.timeouts, "then the timer found no retry left");
    }
}
