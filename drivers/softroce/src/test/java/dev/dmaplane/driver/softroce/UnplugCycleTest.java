package dev.dmaplane.driver.softroce;

import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.Figures;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Hot unplug and driver unbind, again and again, under traffic, with leak accounting after each cycle: every posted
 * work request completes exactly once (SUCCESS or WR_FLUSH_ERR, as ib_core's disassociation flushes them), and once
 * the contexts are closed no DMA mapping, no pinned page, no engine thread and no dma-debug report is left
 * ({@code Documentation/core-api/dma-api.rst}: a driver's mappings end with its unbind;
 * {@code ib_uverbs_remove_one}: a removed device's user objects are destroyed and its contexts disassociated).
 * Even cycles remove the first HCA by surprise ({@code pci_stop_and_remove_bus_device}) while it writes to the
 * second; odd cycles unbind the driver from both while both write to each other.
 *
 * <p>The number of cycles is {@code -Ddmaplane.adversarial.cycles} (default 10; 100 in the long run).
 */
@Tag("adversarial")
@Timeout(1800)
class UnplugCycleTest {

    @Test
    void unplugAndUnbindCyclesUnderTrafficLeakNothing() throws Exception {
        int cycles = Integer.getInteger("dmaplane.adversarial.cycles", 10);
        Set<String> threadsBefore = threadNames();
        long posted = 0;
        long flushed = 0;
        for (int cycle = 0; cycle < cycles; cycle++) {
            try (Hcas h = new Hcas()) {
                long[] counts = cycle % 2 == 0 ? surpriseRemoval(h) : unbind(h);
                posted += counts[0];
                flushed += counts[1];
                h.a.ctx.close();
                h.b.ctx.close();
                String where = "after cycle " + cycle;
                assertEquals(0, h.machine.activeDmaMappings(), "DMA mappings " + where);
                assertEquals(0, h.machine.memory().pinsOutstanding(), "pinned pages " + where);
                List<DmaDebugReport> reports = h.machine.dmaDebug().reports();
                assertTrue(reports.isEmpty(), "dma-debug " + where + ": " + reports);
            }
            assertEquals(0, Hcas.softroceThreads(), "engine threads after cycle " + cycle);
        }
        Set<String> left = threadNames();
        left.removeAll(threadsBefore);
        assertTrue(left.isEmpty(), "threads left behind: " + left);
        Figures.report("UnplugCycleTest", String.format("%d unplug/unbind cycles: %d work requests posted, each "
                + "completed once (%d flushed); 0 mappings, pins, threads or dma-debug reports left", cycles, posted,
                flushed));
    }

    /** rxe0 writes to rxe1 and its PCI function is removed under it. */
    private static long[] surpriseRemoval(Hcas h) throws InterruptedException {
        QueuePair[] p = h.pair();
        Traffic.Poster poster = new Traffic.Poster(p[0], h.a, h.b, true);
        poster.start();
        untilFlowing(List.of(poster));
        h.machine.hotUnplug(h.machine.pci().function("04:00.0"));
        AsyncEvent fatal = Hcas.event(h.a.ctx);
        assertEquals(EventType.DEVICE_FATAL, fatal.type());
        fatal.ack();
        return new long[] {poster.posted.get(), ended(List.of(poster))};
    }

    /** Both HCAs write to each other and the driver is unregistered. */
    private static long[] unbind(Hcas h) throws InterruptedException {
        QueuePair[] p = h.pair();
        List<Traffic.Poster> posters = List.of(new Traffic.Poster(p[0], h.a, h.b, true),
                new Traffic.Poster(p[1], h.b, h.a, true));
        posters.forEach(Thread::start);
        untilFlowing(posters);
        h.machine.devices().unregisterDriver(h.driver);
        long flushed = ended(posters);
        assertEquals(0, Hcas.softroceThreads());
        return new long[] {posters.stream().mapToLong(t -> t.posted.get()).sum(), flushed};
    }

    /** Waits until each poster has seen 10 completions, for at most 10 s. */
    private static void untilFlowing(List<Traffic.Poster> posters) {
        eventually(() -> posters.stream().allMatch(t -> t.completions.size() >= 10), Duration.ofSeconds(10),
                "traffic did not start on " + posters.stream().map(t -> t.from.dev).toList());
    }

    /** Joins the posters (each ends with EIO), drains their CQs and checks exactly-once; returns the flushed count. */
    private static long ended(List<Traffic.Poster> posters) throws InterruptedException {
        long flushed = 0;
        for (Traffic.Poster t : posters) {
            t.join(30_000);
            assertFalse(t.isAlive(), t.getName() + " ended with EIO");
            assertNull(t.failure.get());
            List<WorkCompletion> all = new ArrayList<>(t.completions);
            all.addAll(Traffic.drain(t.from, t.posted.get() - all.size()));
            flushed += exactlyOnce(all, t.posted.get());
        }
        return flushed;
    }

    /** Every wr_id 0..posted-1 came back once, as SUCCESS or WR_FLUSH_ERR; returns how many were flushed. */
    private static long exactlyOnce(List<WorkCompletion> wcs, long posted) {
        assertEquals(posted, wcs.size(), "every posted work request completes once");
        Set<Long> ids = new HashSet<>();
        long flushed = 0;
        for (WorkCompletion wc : wcs) {
            assertTrue(ids.add(wc.wrId()), "wr_id " + wc.wrId() + " completed twice");
            assertTrue(wc.status() == WcStatus.SUCCESS || wc.status() == WcStatus.WR_FLUSH_ERR, wc.toString());
            flushed += wc.status() == WcStatus.WR_FLUSH_ERR ? 1 : 0;
        }
        return flushed;
    }

    private static Set<String> threadNames() {
        Set<String> names = new HashSet<>();
        Thread.getAllStackTraces().keySet().stream().filter(Thread::isAlive).forEach(t -> names.add(t.getName()));
        return names;
    }
}
