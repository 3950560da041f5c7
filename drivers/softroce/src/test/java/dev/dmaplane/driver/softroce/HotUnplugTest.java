package dev.dmaplane.driver.softroce;

import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Surprise removal and driver unbinding under traffic: the engine stops, the RDMA device unregisters (the core
 * disassociates: outstanding work flushed with WR_FLUSH_ERR, DEVICE_FATAL, regions unpinned and unmapped), no
 * thread stays, and the peer's requests to the vanished HCA end in RETRY_EXC_ERR.
 */
@Timeout(60)
class HotUnplugTest extends HcaTestBase {
    @Test
    void surpriseRemovalUnderTrafficFlushesStopsTheEngineAndLeaksNothing() throws Exception {
        QueuePair[] p = h.pair(Hcas.ALL, Hcas.ALL, 7, 7);
        // the poster polls the CQ itself, so that it cannot overflow however long this thread waits for a core
        Traffic.Poster poster = new Traffic.Poster(p[0], h.a, h.b, true);
        poster.start();
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (poster.completions.size() < 20) { // traffic is flowing
            assertTrue(System.nanoTime() < deadline);
            Thread.onSpinWait();
        }
        // a send the peer has no receive for: RNR-NAKed for ever (rnr_retry 7), it keeps every write behind it
        // outstanding, so that there is work in flight at the removal however fast the writes complete
        p[0].postSend(new SendWr.Send(-1, List.of(h.a.sge(0, 8)), SIGNALED, null));
        Engine responder = h.driver.providers.get("rxe1").engine;
        while (responder.counters.rnrNaksSent == 0) {
            assertTrue(System.nanoTime() < deadline);
            Thread.onSpinWait();
        }
        PciFunction fn = h.machine.pci().function("04:00.0");
        h.machine.hotUnplug(fn);
        poster.join(30_000);
        assertFalse(poster.isAlive());
        assertEquals(null, poster.failure.get());
        List<WorkCompletion> before = new ArrayList<>(poster.completions);

        assertTrue(h.a.ctx.isDisassociated());
        AsyncEvent fatal = h.a.ctx.pollAsyncEvent().orElseThrow();
        assertEquals(EventType.DEVICE_FATAL, fatal.type());
        fatal.ack();
        List<WorkCompletion> rest = Traffic.drain(h.a, poster.posted.get() + 1 - before.size());
        before.addAll(rest);
        assertEquals(poster.posted.get() + 1, before.size(), "every posted request came back");
        assertEquals(WcStatus.WR_FLUSH_ERR, before.stream().filter(w -> w.wrId() == -1).findFirst().orElseThrow().status());
        // the context is disassociated and its QPs flushed in one step, between two of the poster's posts: the
        // poster may poll the flushed completions itself before its next post gets EIO, so they are looked for in
        // every completion, the poster's and the rest
        assertTrue(before.stream().anyMatch(w -> w.status() == WcStatus.WR_FLUSH_ERR), "outstanding work was flushed");
        assertTrue(before.stream().allMatch(w -> w.status() == WcStatus.SUCCESS || w.status() == WcStatus.WR_FLUSH_ERR),
                before.stream().map(WorkCompletion::status).distinct().toList().toString());
        assertEquals(1, Hcas.softroceThreads(), "rxe0's engine is gone, rxe1's runs");
        assertEquals(0, h.machine.activeDmaMappings(fn));
        assertFalse(h.core.device("rxe0").isPresent());

        // the peer's requests towards the vanished HCA time out
        p[1].postRecv(RecvWr.of(1, h.b.sge(0, 64)));
        p[1].postSend(new SendWr.Send(2, List.of(h.b.sge(0, 8)), SIGNALED, null));
        assertEquals(WcStatus.RETRY_EXC_ERR, Hcas.one(h.b.cq).status());
    }

    @Test
    void unbindingTheDriverUnderTrafficInBothDirectionsLeavesNoThreadNoPinNoMapping() throws Exception {
        QueuePair[] p = h.pair();
        // each poster polls its own CQ, so that neither overflows while the unbind runs
        Traffic.Poster ab = new Traffic.Poster(p[0], h.a, h.b, true);
        Traffic.Poster ba = new Traffic.Poster(p[1], h.b, h.a, true);
        ab.start();
        ba.start();
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (ab.completions.size() < 10 || ba.completions.size() < 10) {
            assertTrue(System.nanoTime() < deadline);
            Thread.onSpinWait();
        }
        h.machine.devices().unregisterDriver(h.driver);
        ab.join(30_000);
        ba.join(30_000);
        assertFalse(ab.isAlive() || ba.isAlive());
        assertEquals(null, ab.failure.get());
        assertEquals(null, ba.failure.get());
        List<WorkCompletion> a = new ArrayList<>(ab.completions);
        List<WorkCompletion> b = new ArrayList<>(ba.completions);
        assertEquals(0, Hcas.softroceThreads());
        assertTrue(h.core.devices().isEmpty());
        a.addAll(Traffic.drain(h.a, ab.posted.get() - a.size()));
        b.addAll(Traffic.drain(h.b, ba.posted.get() - b.size()));
        assertEquals(ab.posted.get(), a.size());
        assertEquals(ba.posted.get(), b.size());
        for (String bdf : List.of("04:00.0", "05:00.0")) {
            assertFalse(h.machine.pci().function(bdf).busMasterEnabled());
        }
        h.a.ctx.close();
        h.b.ctx.close();
        assertEquals(0, h.machine.activeDmaMappings());
        assertEquals(0, h.machine.memory().pinsOutstanding());
    }
}
