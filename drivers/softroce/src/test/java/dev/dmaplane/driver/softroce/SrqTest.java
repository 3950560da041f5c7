package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.SharedReceiveQueue;
import dev.dmaplane.rdma.verbs.SrqAttr;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A shared receive queue on the HCA ({@code ibv_create_srq(3)}, {@code drivers/infiniband/sw/rxe/rxe_srq.c}): the
 * sends to a QP attached to it consume its receives in the order they were posted.
 */
@Timeout(60)
class SrqTest extends HcaTestBase {
    @Test
    void sendsLandInAnSrqAttachedQp() {
        SharedReceiveQueue srq = h.b.pd.createSrq(new SrqAttr(64, 2, 0));
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.pd.createQp(new QpInitAttr(h.b.cq, h.b.cq, srq, new QpCap(16, 0, 4, 0, 0), QpType.RC, false));
        Hcas.connect(qa, qb, h.b.gid, Hcas.ALL, 7, 7);
        Hcas.connect(qb, qa, h.a.gid, Hcas.ALL, 7, 7);
        for (int i = 0; i < 4; i++) {
            srq.postRecv(RecvWr.of(100 + i, h.b.sge(i * 4096L, 4096)));
        }
        byte[] msg = Hcas.random(3000, 5);
        h.a.write(0, msg);
        for (int i = 0; i < 4; i++) {
            qa.postSend(new SendWr.Send(i, List.of(h.a.sge(0, 3000)), SIGNALED, null));
        }
        assertTrue(Hcas.poll(h.a.cq, 4).stream().allMatch(WorkCompletion::isSuccess));
        List<WorkCompletion> r = Hcas.poll(h.b.cq, 4);
        assertEquals(List.of(100L, 101L, 102L, 103L), r.stream().map(WorkCompletion::wrId).toList());
        for (int i = 0; i < 4; i++) {
            assertArrayEquals(msg, h.b.read(i * 4096L, 3000));
        }
    }
}
