package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The completer's {@code check_ack} ({@code rxe_comp.c}): what a response at the PSN the oldest request expects says
 * about that request. Responses are made by the test and handed to the fabric as the peer's HCA would send them.
 */
@Timeout(60)
class CheckAckTest {
    private final Hcas h = new Hcas();

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, Hcas.softroceThreads());
    }

    /**
     * {@code check_ack}: a READ response that starts (RDMA READ Response First or Only) at the PSN where the oldest
     * request, an RDMA WRITE, waits for its acknowledgement answers a READ that was never asked for: rxe sets
     * {@code IB_WC_FATAL_ERR} and completes the request in error ({@code COMPST_ERROR}), and the QP goes to ERR.
     * The WRITE itself is lost on the way, so nothing else answers it; before, the response was ignored and the
     * WRITE ended in RETRY_EXC_ERR after the transport timer's retries.
     */
    @Test
    void aReadResponseWhereAWriteWaitsForItsAckCompletesTheWriteWithFatalErr() {
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        Hcas.connect(qa, qb.qpNum(), h.b.gid, Hcas.ALL, 7, 1, 0x100, 24);
        Hcas.connect(qb, qa.qpNum(), h.a.gid, Hcas.ALL, 7, 1, 0x100, 24);
        h.driver.fabric.loss = pk -> pk.op() == Packet.Op.WRITE;
        qa.postSend(List.of(
                new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 64)), SIGNALED, h.b.buf, h.b.mr.rkey()),
                new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 64)), SIGNALED, h.b.buf + 64, h.b.mr.rkey())));
        eventually(() -> h.driver.fabric.dropped.get() >= 2, Hcas.WAIT, "both writes sent and lost");
        h.driver.fabric.send(List.of(new Packet(h.b.gid, h.a.gid, qb.qpNum(), qa.qpNum(), Packet.Op.READ_RESP, true,
                true, 0x100, 1, false, 0, 0, 0, 0, 0, 0, Packet.AETH_ACK, 1, 0, 0,
                Packet.Payload.Bytes.of(new byte[64]), false)));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertEquals(List.of(1L, 2L), wc.stream().map(WorkCompletion::wrId).toList());
        assertEquals(List.of(WcStatus.FATAL_ERR, WcStatus.WR_FLUSH_ERR),
                wc.stream().map(WorkCompletion::status).toList());
        assertEquals(0, h.engine("rxe0").counters.timeouts, "answered by the response, not by the timer");
    }
}
