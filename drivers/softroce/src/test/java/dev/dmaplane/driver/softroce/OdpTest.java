package dev.dmaplane.driver.softroce;

import dev.dmaplane.mm.Prot;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * On-demand-paging regions as RDMA targets on the HCA ({@code IBV_ACCESS_ON_DEMAND},
 * {@code drivers/infiniband/sw/rxe/rxe_odp.c}): the responder faults pages in, and an unmapped range is
 * invalidated through the interval notifier and refused afterwards.
 */
@Timeout(60)
class OdpTest extends HcaTestBase {
    @Test
    void onDemandRegionsAreFaultedInByTheResponder() {
        long odpBuf = h.b.mm.mmapAnonymous(1 << 20, Prot.PROT_READ | Prot.PROT_WRITE);
        MemoryRegion odp = h.b.pd.regMr(odpBuf, 1 << 20, Hcas.ALL | Access.ON_DEMAND);
        QueuePair[] p = h.pair();
        byte[] data = Hcas.random(200_000, 6);
        h.a.write(0, data);
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, data.length)), SIGNALED, odpBuf + 777, odp.rkey()));
        p[0].postSend(new SendWr.RdmaRead(2, List.of(h.a.sge(1 << 20, data.length)), SIGNALED, odpBuf + 777, odp.rkey()));
        assertTrue(Hcas.poll(h.a.cq, 2).stream().allMatch(WorkCompletion::isSuccess));
        byte[] there = new byte[data.length];
        h.b.mm.read(odpBuf + 777, MemorySegment.ofArray(there));
        assertArrayEquals(data, there);
        assertArrayEquals(data, h.a.read(1 << 20, data.length));
    }

    /**
     * An on-demand target under the HCA: munmap invalidates what the HCA mapped (the interval notifier), a later
     * write into the hole is refused (REM_ACCESS_ERR, the QP in ERR), and on a new QP the pages still mapped take
     * writes, trains of short writes included.
     */
    @Test
    void anOnDemandTargetLosesWhatIsUnmappedAndKeepsTheRest() {
        long odpBuf = h.b.mm.mmapAnonymous(4 * 4096, Prot.PROT_READ | Prot.PROT_WRITE);
        MemoryRegion odp = h.b.pd.regMr(odpBuf, 4 * 4096, Hcas.ALL | Access.ON_DEMAND);
        QueuePair[] p = h.pair();
        h.a.write(0, Hcas.random(4 * 4096, 8));
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 4 * 4096)), SIGNALED, odpBuf, odp.rkey()));
        assertTrue(Hcas.one(h.a.cq).isSuccess());
        var hca = h.machine.pci().function("05:00.0");
        int mapped = h.machine.activeDmaMappings(hca);

        h.b.mm.munmap(odpBuf + 2 * 4096, 4096);
        assertEquals(mapped - 1, h.machine.activeDmaMappings(hca), "the HCA's mapping of the page went with it");
        p[0].postSend(new SendWr.RdmaWrite(2, List.of(h.a.sge(0, 64)), SIGNALED, odpBuf + 2 * 4096 + 64, odp.rkey()));
        assertEquals(WcStatus.REM_ACCESS_ERR, Hcas.one(h.a.cq).status(), "nothing there any more");

        QueuePair[] q = h.pair();
        List<SendWr> train = new ArrayList<>();
        for (int i = 0; i < 16; i++) {
            train.add(new SendWr.RdmaWrite(10 + i, List.of(h.a.sge(64L * i, 64)), SIGNALED, odpBuf + 4096 + 64L * i,
                    odp.rkey()));
        }
        q[0].postSend(train);
        assertTrue(Hcas.poll(h.a.cq, 16).stream().allMatch(WorkCompletion::isSuccess));
        byte[] there = new byte[16 * 64];
        h.b.mm.read(odpBuf + 4096, MemorySegment.ofArray(there));
        assertArrayEquals(Arrays.copyOf(Hcas.random(4 * 4096, 8), 16 * 64), there);
        odp.destroy();
    }
}
