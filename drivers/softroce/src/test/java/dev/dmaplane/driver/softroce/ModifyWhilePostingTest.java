package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.MemoryWindow;
import dev.dmaplane.rdma.verbs.MwBindInfo;
import dev.dmaplane.rdma.verbs.MwType;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.Blocked;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code ibv_modify_qp} on one thread while another posts, with the post forced into the moment between the HCA's
 * modify hook and the core's commit (the engine's {@code modified} hook): the HCA must never run the QP half-changed.
 * {@code ibv_modify_qp(3)} and rxe ({@code rxe_qp.c}: {@code rxe_qp_error} flushes, {@code rxe_qp_reset} runs with
 * the QP's tasks stopped by {@code rxe_disable_task}; {@code rxe_comp.c} flushes every outstanding WQE with
 * {@code IB_WC_WR_FLUSH_ERR} once the QP is in error): moving to ERR completes every outstanding send exactly
 * once with WR_FLUSH_ERR, the request posted meanwhile included, and executes none of them; moving to RESET empties
 * the queues without completions. Before the fix the posting thread ran the engine between the two steps, with the
 * engine's view of the send queue reset and the core's QP still in RTS: it executed the bind behind the write it
 * had forgotten and failed with "send wqe ... is not the oldest outstanding send".
 */
@Timeout(60)
class ModifyWhilePostingTest {
    private final Hcas h = new Hcas();

    @AfterEach
    void close() {
        h.engine("rxe0").modified = null;
        h.close();
        assertEquals(0, Hcas.softroceThreads());
    }

    @Test
    void errorFlushesTheWriteInFlightAndTheBindPostedDuringTheModifyExactlyOnce() {
        Posted posted = modifyWhilePosting(QpState.ERR);
        Map<Long, List<WcStatus>> byId = Hcas.poll(h.a.cq, 2).stream().collect(
                Collectors.groupingBy(WorkCompletion::wrId, Collectors.mapping(WorkCompletion::status, Collectors.toList())));
        assertEquals(Map.of(1L, List.of(WcStatus.WR_FLUSH_ERR), 2L, List.of(WcStatus.WR_FLUSH_ERR)), byId);
        assertTrue(h.a.cq.poll(8).isEmpty(), "each request completes once");
        assertEquals(posted.keyBefore, posted.mw.rkey(), "the flushed bind was not executed");
        reconnectAndWrite(posted.p);
    }

    @Test
    void resetDiscardsTheWriteInFlightAndTheBindPostedDuringTheModify() {
        Posted posted = modifyWhilePosting(QpState.RESET);
        assertTrue(h.a.cq.poll(8).isEmpty(), "RESET empties the queues without completions");
        assertEquals(posted.keyBefore, posted.mw.rkey(), "the discarded bind was not executed");
        reconnectAndWrite(posted.p);
    }

    private record Posted(QueuePair[] p, MemoryWindow mw, int keyBefore) {
    }

    /**
     * A write in flight on rxe0's QP (rxe1 has no carrier, so no ACK comes), then a modify to {@code to} during
     * which another thread posts a type 2 bind: the post lands after the engine's hook and before the commit.
     */
    private Posted modifyWhilePosting(QpState to) {
        QueuePair[] p = h.pair();
        MemoryRegion bindable = h.a.pd.regMr(h.a.buf, 65536, Hcas.ALL | Access.MW_BIND);
        MemoryWindow mw = h.a.pd.allocMw(MwType.TYPE_2);
        int keyBefore = mw.rkey();
        h.driver.carrier("rxe1", "down");
        assertEquals(EventType.PORT_ERR, Hcas.event(h.b.ctx).type());
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(h.a.sge(0, 64)), SIGNALED, h.b.buf, h.b.mr.rkey()));
        assertEquals(1, ((HwQp) p[0]).sendInFlight(), "the write was started");

        AtomicBoolean fired = new AtomicBoolean();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        h.engine("rxe0").modified = qp -> {
            if (qp != p[0] || !fired.compareAndSet(false, true)) {
                return;
            }
            Thread poster = Thread.ofPlatform().name("poster").start(() -> {
                try {
                    p[0].postSend(new SendWr.BindMw(2, SIGNALED, mw, SendWr.incRkey(keyBefore),
                            new MwBindInfo(bindable, h.a.buf, 4096, Access.REMOTE_WRITE)));
                } catch (Throwable t) {
                    failure.set(t);
                }
            });
            try {
                poster.join(10_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            assertFalse(poster.isAlive(), "the post returned");
        };
        p[0].modify(QpAttr.builder().state(to).build());
        h.engine("rxe0").modified = null;
        assertTrue(fired.get());
        assertNull(failure.get());
        assertEquals(to, p[0].query().qpState());
        assertTrue(h.a.ctx.pollAsyncEvent().isEmpty(), "no DEVICE_FATAL, no QP event");
        return new Posted(p, mw, keyBefore);
    }

    /** The QP is whole afterwards: RESET, reconnected, a write lands and completes. */
    private void reconnectAndWrite(QueuePair[] p) {
        h.driver.carrier("rxe1", "up");
        assertEquals(EventType.PORT_ACTIVE, Hcas.event(h.b.ctx).type());
        for (QueuePair qp : p) {
            qp.modify(QpAttr.builder().state(QpState.RESET).build());
        }
        Hcas.connect(p[0], p[1], h.b.gid, Hcas.ALL, 7, 7, 0x2000);
        Hcas.connect(p[1], p[0], h.a.gid, Hcas.ALL, 7, 7, 0x2000);
        h.a.write(128, Hcas.random(64, 10));
        p[0].postSend(new SendWr.RdmaWrite(3, List.of(h.a.sge(128, 64)), SIGNALED, h.b.buf + 128, h.b.mr.rkey()));
        WorkCompletion wc = Hcas.one(h.a.cq);
        assertEquals(3, wc.wrId());
        assertEquals(WcStatus.SUCCESS, wc.status());
        assertArrayEquals(Hcas.random(64, 10), h.b.read(128, 64));
    }

    /**
     * The HCA moves the QP to ERR (an error completion, rxe_qp_error) while a thread's modify_qp to ERR waits for
     * the engine: the modify reads the state it checks with the engine held, so it moves ERR to ERR, which
     * ib_modify_qp_is_ok allows from every state. Before, it read RTS before it waited and then refused its own
     * commit with EINVAL ("moved from RTS to ERR during the modify"), which VerbsSequenceTest met as a QP that could
     * not be retired.
     */
    @Test
    void aModifyToErrorWaitingForTheEngineWhileTheHcaErrorsTheQpSucceeds() throws Exception {
        QueuePair[] p = h.pair();
        Engine engine = h.engine("rxe0");
        Blocked.Call<Void> modify;
        engine.lock.lock();
        try {
            modify = Blocked.<Void>start("modify-to-err", () -> {
                p[0].modify(QpAttr.builder().state(QpState.ERR).build());
                return null;
            }).awaitBlockedIn("java.util.concurrent.locks.ReentrantLock.lock",
                    "dev.dmaplane.driver.softroce.Engine.quiesce");
            ((HwQp) p[0]).enterError(); // what the engine does on an error completion, under its lock
        } finally {
            engine.release();
        }
        modify.get();
        assertEquals(QpState.ERR, p[0].query().qpState());
    }
}
