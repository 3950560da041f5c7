package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.trace.TraceEvent;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * An unexpected exception inside the HCA is a fatal device error, handled as a hardware HCA's firmware crash is:
 * mlx5's health poller dispatches {@code IB_EVENT_DEVICE_FATAL} and the device is unloaded, so that
 * {@code ib_unregister_device} disassociates every context ({@code drivers/infiniband/core/uverbs_main.c},
 * {@code ib_uverbs_free_hw_resources}: DEVICE_FATAL queued to every file, every object destroyed with
 * {@code RDMA_REMOVE_DRIVER_REMOVE}, later verbs failing with {@code EIO}) and every outstanding work request
 * completes once with {@code IB_WC_WR_FLUSH_ERR}. The exception is injected through the fabric's test hook, in the
 * middle of a train of writes: the HCA that sends the packet meets it. Before the fix the engine swallowed it: no
 * event, the QP stayed in RTS and its work stayed outstanding.
 */
@Timeout(60)
class FatalErrorTest {
    private final Hcas h = new Hcas();

    @AfterEach
    void close() {
        h.close();
        assertEquals(0, Hcas.softroceThreads());
    }

    @Test
    void anExceptionInTheHcaIsFatalFlushesEveryRequestOnceAndLeavesNoThreadPinOrMapping() {
        QueuePair[] p = h.pair();
        Engine rxe0 = h.engine("rxe0");
        PciFunction fn = h.machine.pci().function("04:00.0");
        h.crashExpected.add("rxe0");
        List<WorkCompletion> all = new ArrayList<>();

        // traffic flows: 16 writes of 4 KiB complete
        List<SendWr> first = new ArrayList<>();
        for (int i = 0; i < 16; i++) {
            first.add(new SendWr.RdmaWrite(i, List.of(h.a.sge(0, 4096)), SIGNALED, h.b.buf + i * 4096L, h.b.mr.rkey()));
        }
        p[0].postSend(first);
        all.addAll(Hcas.poll(h.a.cq, 16));
        assertTrue(all.stream().allMatch(WorkCompletion::isSuccess), all.toString());

        // receives waiting on rxe0, then 48 more writes and a send: rxe0 meets an exception at its 20th packet
        p[0].postRecv(List.of(RecvWr.of(100, h.a.sge(1 << 20, 64)), RecvWr.of(101, h.a.sge(1 << 20, 64))));
        long seq = h.machine.tracer().lastSeq();
        AtomicInteger packets = new AtomicInteger();
        RuntimeException injected = new IllegalStateException("injected: index 4096 out of bounds for length 4096");
        h.driver.fabric.loss = pk -> {
            if (pk.sgid().equals(rxe0.gid()) && packets.incrementAndGet() == 20) {
                throw injected;
            }
            return false;
        };
        List<SendWr> second = new ArrayList<>();
        for (int i = 16; i < 64; i++) {
            second.add(new SendWr.RdmaWrite(i, List.of(h.a.sge(0, 4096)), SIGNALED, h.b.buf + i * 4096L, h.b.mr.rkey()));
        }
        second.add(new SendWr.Send(64, List.of(h.a.sge(0, 8)), SIGNALED, null));
        p[0].postSend(second); // the engine runs in this thread and dies; the post itself succeeded

        AsyncEvent fatal = Hcas.event(h.a.ctx);
        assertEquals(EventType.DEVICE_FATAL, fatal.type());
        fatal.ack();
        assertSame(injected, rxe0.crash());
        eventually(() -> h.a.ctx.isDisassociated() && !rxe0.isRunning(), Duration.ofSeconds(10),
                "rxe0 disassociated and its worker gone");

        // every request came back exactly once: what was outstanding with WR_FLUSH_ERR
        List<WorkCompletion> rest = Hcas.poll(h.a.cq, 48 + 1 + 2);
        assertTrue(h.a.cq.poll(16).isEmpty(), "nothing completes twice");
        Map<Long, WcStatus> byId = new HashMap<>();
        for (WorkCompletion wc : rest) {
            assertEquals(null, byId.put(wc.wrId(), wc.status()), "wr_id " + wc.wrId() + " completed twice");
            assertEquals(WcStatus.WR_FLUSH_ERR, wc.status(), wc.toString());
        }
        for (long id = 16; id <= 64; id++) {
            assertTrue(byId.containsKey(id), "wr_id " + id);
        }
        assertTrue(byId.containsKey(100L) && byId.containsKey(101L), "the receives were flushed");

        // the crash was traced once; the device is gone as on hot unplug, with nothing left mapped or pinned
        List<TraceEvent> traced = h.machine.tracer().since(seq).stream()
                .filter(e -> e.kind() == TraceKind.DEVICE_FATAL).toList();
        assertEquals(1, traced.size(), traced.toString());
        assertEquals("rxe0", traced.getFirst().device());
        assertTrue(traced.getFirst().detail().contains("injected"), traced.getFirst().detail());
        assertFalse(h.core.device("rxe0").isPresent());
        assertEquals(1, Hcas.softroceThreads(), "rxe0's engine thread is gone, rxe1's runs");
        assertEquals(0, h.machine.activeDmaMappings(fn));
        assertEquals(0, h.a.mm.pinnedPages());
        assertEquals(Errno.EIO, assertThrows(ErrnoException.class,
                () -> p[0].postSend(new SendWr.Send(65, List.of(h.a.sge(0, 8)), SIGNALED, null))).errno());
        assertTrue(h.b.ctx.pollAsyncEvent().isEmpty(), "rxe1 is not affected");

        // the peer's requests towards the dead HCA time out
        p[1].postSend(new SendWr.Send(2, List.of(h.b.sge(0, 8)), SIGNALED, null));
        assertEquals(WcStatus.RETRY_EXC_ERR, Hcas.one(h.b.cq).status());
    }
}
