package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Packet sequence numbers are 24 bits and wrap ({@code psn_compare} in {@code drivers/infiniband/sw/rxe/rxe.h}):
 * a message whose packets cross 2^24 arrives whole, and a read after it too.
 */
@Timeout(60)
class PsnWrapTest extends HcaTestBase {
    @Test
    void psnsWrapAroundAt2To24() {
        QueuePair qa = h.a.rc();
        QueuePair qb = h.b.rc();
        Hcas.connect(qa, qb, h.b.gid, Hcas.ALL, 7, 7, 0xFFFFFE);
        Hcas.connect(qb, qa, h.a.gid, Hcas.ALL, 7, 7, 0xFFFFFE);
        byte[] msg = Hcas.random(5000, 7);
        h.a.write(0, msg);
        qb.postRecv(RecvWr.of(1, h.b.sge(0, 8192)));
        qa.postSend(new SendWr.Send(1, List.of(h.a.sge(0, 5000)), SIGNALED, null)); // PSNs 0xFFFFFE..0x000002
        qa.postSend(new SendWr.RdmaRead(2, List.of(h.a.sge(65536, 5000)), SIGNALED, h.b.buf, h.b.mr.rkey()));
        List<WorkCompletion> wc = Hcas.poll(h.a.cq, 2);
        assertTrue(wc.stream().allMatch(WorkCompletion::isSuccess), wc.toString());
        assertArrayEquals(msg, h.b.read(0, 5000));
        assertArrayEquals(msg, h.a.read(65536, 5000));
        assertEquals(5000, Hcas.one(h.b.cq).byteLen());
    }
}
