package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * QP state changes under traffic on the HCA, as {@code ibv_modify_qp(3)} defines them and
 * {@code drivers/infiniband/sw/rxe/rxe_qp.c} carries them out: SQD lets started work finish and reports
 * {@code SQ_DRAINED}, back in RTS the rest runs; a QP reset and connected again works like a new one.
 */
@Timeout(60)
class QpStateTest extends HcaTestBase {
    /** SQD (ibv_modify_qp to IBV_QPS_SQD with en_sqd_async_notify): work started finishes, then SQ_DRAINED; RTS resumes. */
    @Test
    void sqdDrainsWhatTheHcaStartedAndRtsResumesTheRest() {
        QueuePair[] p = h.pair();
        h.a.write(0, Hcas.random(64, 3));
        h.driver.carrier("rxe1", "down"); // the write stays in flight, retried, until the carrier returns
        assertEquals(EventType.PORT_ERR, Hcas.event(h.b.ctx).type());
        p[0].postSend(List.of(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 64)), SIGNALED, h.b.buf + 64, h.b.mr.rkey())));
        p[0].modify(QpAttr.builder().state(QpState.SQD)
                .enSqdAsyncNotify(true).build());
        assertTrue(p[0].query().sqDraining(), "the started write is not done");
        assertTrue(h.a.ctx.pollAsyncEvent().isEmpty(), "not drained yet");
        h.driver.carrier("rxe1", "up");
        var drained = Hcas.event(h.a.ctx);
        assertEquals(EventType.SQ_DRAINED, drained.type());
        assertSame(p[0], drained.qp().orElseThrow());
        drained.ack();
        assertEquals(1, Hcas.one(h.a.cq).wrId());
        assertArrayEquals(Hcas.random(64, 3), h.b.read(64, 64));
        p[0].postSend(List.of(new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 64)), SIGNALED, h.b.buf + 128, h.b.mr.rkey())));
        assertTrue(h.a.cq.poll(1).isEmpty(), "SQD starts nothing new");
        p[0].modify(QpAttr.builder().state(QpState.RTS).build());
        assertEquals(2, Hcas.one(h.a.cq).wrId(), "back in RTS the waiting request runs");
        assertArrayEquals(Hcas.random(64, 3), h.b.read(128, 64));
    }

    @Test
    void aQpResetAndConnectedAgainWorks() {
        QueuePair[] p = h.pair(Hcas.ALL, Hcas.ALL, 0, 7);
        p[0].postSend(new SendWr.Send(1, List.of(h.a.sge(0, 8)), SIGNALED, null));
        assertEquals(WcStatus.RNR_RETRY_EXC_ERR, Hcas.one(h.a.cq).status());
        for (QueuePair q : p) {
            q.modify(QpAttr.builder().state(QpState.RESET).build());
        }
        Hcas.connect(p[0], p[1], h.b.gid, Hcas.ALL, 7, 7, 0x4242);
        Hcas.connect(p[1], p[0], h.a.gid, Hcas.ALL, 7, 7, 0x4242);
        h.a.write(0, "again".getBytes());
        p[1].postRecv(RecvWr.of(3, h.b.sge(0, 64)));
        p[0].postSend(new SendWr.Send(2, List.of(h.a.sge(0, 5)), SIGNALED, null));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertEquals(3, Hcas.one(h.b.cq).wrId());
        assertArrayEquals("again".getBytes(), h.b.read(0, 5));
    }
}
