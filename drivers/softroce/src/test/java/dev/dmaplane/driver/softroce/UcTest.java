package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.QpAttr;
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
import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Unreliable connected QPs on the HCA ({@code IBV_QPT_UC} of {@code ibv_create_qp(3)},
 * {@code drivers/infiniband/sw/rxe/rxe_resp.c}): sends and writes are not acknowledged, the sender completes them
 * anyway, and a message the responder cannot take is skipped.
 */
@Timeout(60)
class UcTest extends HcaTestBase {
    @Test
    void ucSendsAndWritesAreUnacknowledgedAndALostMessageIsSkipped() {
        QueuePair qa = h.a.pd.createQp(new QpInitAttr(h.a.cq, h.a.cq, null, new QpCap(16, 16, 4, 4, 0), QpType.UC, false));
        QueuePair qb = h.b.pd.createQp(new QpInitAttr(h.b.cq, h.b.cq, null, new QpCap(16, 16, 4, 4, 0), QpType.UC, false));
        for (QueuePair[] q : new QueuePair[][]{{qa, qb}, {qb, qa}}) {
            Gid peer = q[0] == qa ? h.b.gid : h.a.gid;
            q[0].modify(QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1)
                    .accessFlags(Access.LOCAL_WRITE | Access.REMOTE_WRITE).build());
            q[0].modify(QpAttr.builder().state(QpState.RTR).av(AhAttr.roce(peer, 1, 1))
                    .pathMtu(Mtu.MTU_1024).destQpn(q[1].qpNum()).rqPsn(7).build());
            q[0].modify(QpAttr.builder().state(QpState.RTS).sqPsn(7).build());
        }
        byte[] msg = Hcas.random(3000, 8);
        h.a.write(0, msg);
        // no receive posted: the first send is dropped at the responder, the sender still completes
        Engine responder = h.driver.providers.get("rxe1").engine;
        long seen = responder.counters.pktsRecv.get();
        h.a.write(65536, Hcas.random(3000, 99));
        qa.postSend(new SendWr.Send(1, List.of(h.a.sge(65536, 3000)), SIGNALED, null));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        // its three packets reached the responder and were dropped
        eventually(() -> responder.counters.pktsRecv.get() >= seen + 3, Duration.ofSeconds(5),
                "the dropped send's three packets reach the responder");
        qb.postRecv(RecvWr.of(5, h.b.sge(0, 4096)));
        qa.postSend(new SendWr.Send(2, List.of(h.a.sge(0, 3000)), SIGNALED, null));
        qa.postSend(new SendWr.RdmaWrite(3, List.of(h.a.sge(0, 3000)), SIGNALED, h.b.buf + 8192, h.b.mr.rkey()));
        assertTrue(Hcas.poll(h.a.cq, 2).stream().allMatch(WorkCompletion::isSuccess));
        WorkCompletion r = Hcas.one(h.b.cq);
        assertEquals(5, r.wrId());
        assertEquals(3000, r.byteLen());
        assertArrayEquals(msg, h.b.read(0, 3000));
        eventually(() -> Arrays.equals(msg, h.b.read(8192, 3000)), Duration.ofSeconds(5), "the UC write lands");
    }
}
