package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.CompletionChannel;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.rdma.verbs.SendFlags.SOLICITED;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What the HCA's completion queues raise, as {@code rxe_cq_post} in {@code drivers/infiniband/sw/rxe/rxe_cq.c}
 * does it: a completion posted to a full CQ is lost with {@code IB_EVENT_CQ_ERR} (and the QP behind it goes to
 * ERR with {@code QP_FATAL}), and a solicited-only notification ({@code ibv_req_notify_cq(cq, 1)}) fires for a
 * receive whose send carried the solicited event bit only.
 */
@Timeout(60)
class CqEventTest extends HcaTestBase {
    /** rxe_cq_post on a full CQ: the completion is lost, CQ_ERR, and the QP that lost it goes to ERR with QP_FATAL. */
    @Test
    void aCqOverrunOnTheHcaRaisesCqErrAndQpFatal() {
        var small = h.a.ctx.createCq(2, null, 0);
        var qa = h.a.pd.createQp(new QpInitAttr(small, small, null,
                new QpCap(8, 8, 1, 1, 0), QpType.RC, false));
        var qb = h.b.rc();
        Hcas.connect(qa, qb, h.b.gid, Hcas.ALL, 7, 7);
        Hcas.connect(qb, qa, h.a.gid, Hcas.ALL, 7, 7);
        qa.postSend(List.of(new SendWr.RdmaWrite(0, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey()),
                new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey()),
                new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 8)), SIGNALED, h.b.buf, h.b.mr.rkey())));
        var err = Hcas.event(h.a.ctx);
        assertEquals(EventType.CQ_ERR, err.type());
        assertSame(small, err.cq().orElseThrow());
        var fatal = Hcas.event(h.a.ctx);
        assertEquals(EventType.QP_FATAL, fatal.type());
        assertSame(qa, fatal.qp().orElseThrow());
        assertEquals(QpState.ERR, qa.query().qpState());
        assertEquals(List.of(0L, 1L), small.poll(8).stream().map(WorkCompletion::wrId).toList(), "the third was lost");
        err.ack();
        fatal.ack();
    }

    @Test
    void theSolicitedEventBitReachesTheReceiversCq() {
        CompletionChannel ch = h.b.ctx.createCompChannel();
        CompletionQueue rcq = h.b.ctx.createCq(64, ch, 0);
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.pd.createQp(new QpInitAttr(h.b.cq, rcq, null, new QpCap(16, 16, 4, 4, 64), QpType.RC, false));
        Hcas.connect(qa, qb, h.b.gid, Hcas.ALL, 7, 7);
        Hcas.connect(qb, qa, h.a.gid, Hcas.ALL, 7, 7);
        qb.postRecv(List.of(RecvWr.of(1, h.b.sge(0, 64)), RecvWr.of(2, h.b.sge(64, 64))));
        rcq.reqNotify(true);
        qa.postSend(new SendWr.Send(1, List.of(h.a.sge(0, 8)), SIGNALED, null));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertEquals(1, Hcas.one(rcq).wrId());
        assertTrue(ch.pollCqEvent().isEmpty(), "an unsolicited receive raises no solicited-only event");
        qa.postSend(new SendWr.Send(2, List.of(h.a.sge(0, 8)), SIGNALED | SOLICITED, null));
        assertTrue(ch.getCqEvent(Duration.ofSeconds(10)).isPresent(), "the solicited receive does");
        rcq.ackEvents(1);
        assertEquals(2, Hcas.one(rcq).wrId());
    }
}
