package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.INLINE;
import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Send flags on the HCA ({@code ibv_post_send(3)}): {@code IBV_SEND_INLINE} copies the payload at post time, and
 * only a work request with {@code IBV_SEND_SIGNALED} completes on a QP created with {@code sq_sig_all} off.
 */
@Timeout(60)
class SendFlagsTest extends HcaTestBase {
    @Test
    void inlineSendsAndUnsignaledWritesComplete() {
        QueuePair[] p = h.pair();
        h.a.write(0, "inline payload".getBytes());
        p[1].postRecv(RecvWr.of(1, h.b.sge(0, 64)));
        p[0].postSend(new SendWr.Send(1, List.of(h.a.sge(0, 14)), SIGNALED | INLINE, null));
        assertEquals(WcStatus.SUCCESS, Hcas.one(h.a.cq).status());
        assertEquals(14, Hcas.one(h.b.cq).byteLen());
        assertArrayEquals("inline payload".getBytes(), h.b.read(0, 14));

        List<SendWr> wrs = new ArrayList<>();
        for (int i = 0; i < 16; i++) {
            h.a.write(4096 + i * 64L, Hcas.random(64, i));
            wrs.add(new SendWr.RdmaWrite(10 + i, List.of(h.a.sge(4096 + i * 64L, 64)), i == 15 ? SIGNALED : 0,
                    h.b.buf + 8192 + i * 64L, h.b.mr.rkey()));
        }
        p[0].postSend(wrs);
        WorkCompletion last = Hcas.one(h.a.cq);
        assertEquals(25, last.wrId(), "only the signaled one completes");
        assertArrayEquals(h.a.read(4096, 1024), h.b.read(8192, 1024));
        assertTrue(h.a.cq.poll(4).isEmpty());
    }
}
