package dev.dmaplane.rdma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.rdma.loopback.LoopbackProvider;
import dev.dmaplane.rdma.spi.HwSrq;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.CompletionChannel;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.PostException;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.SharedReceiveQueue;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.SrqAttr;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.Blocked;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.time.Duration;
import java.util.List;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.rdma.verbs.SendFlags.SOLICITED;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Completion queues, channels and async events: {@code ibv_create_cq(3)} limits, {@code ibv_req_notify_cq(3)} and
 * {@code ibv_get_cq_event(3)} (one event per arming, solicited-only arming as {@code rxe_cq_post} honours it,
 * {@code ibv_destroy_cq} waiting for {@code ibv_ack_cq_events}), {@code ibv_resize_cq(3)}, CQ overrun (CQ_ERR), the
 * SRQ limit event of {@code ibv_modify_srq(3)}, QP_LAST_WQE_REACHED for SRQ-attached QPs entering ERR, and
 * {@code ibv_get_async_event(3)} / {@code ibv_ack_async_event} with destroys that wait for acknowledgements.
 */
@Timeout(30)
class CqAndEventsTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private final Fixture f = new Fixture();
    private final VerbsContext ctx = f.open();
    private final ProtectionDomain pd = ctx.allocPd();
    private final long buf = f.alloc(4 * PAGE);
    private final MemoryRegion mr = pd.regMr(buf, 4 * PAGE, Access.LOCAL_WRITE | Access.REMOTE_WRITE);

    @AfterEach
    void close() {
        f.close();
    }

    private Sge sge(long off, long len) {
        return new Sge(buf + off, len, mr.lkey());
    }

    @Test
    void createLimits() {
        int max = ctx.queryDevice().maxCqe();
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> ctx.createCq(0, null, 0)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> ctx.createCq(max + 1, null, 0)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> ctx.createCq(4, null, 1)).errno(),
                "one completion vector");
        assertEquals(max, ctx.createCq(max, null, 0).cqe());
    }

    /**
     * Polling reads CQ memory only, as {@code ibv_poll_cq} reads a queue mapped into user space: an empty CQ costs
     * two index reads and no lock, a CQ with completions the poll lock; neither enters the core or the provider,
     * unless the provider progresses lazily in its poll hook.
     */
    @Test
    void cqsArePolledFromCqMemoryWithoutEnteringTheProviderUnlessItProgressesOnPoll() {
        CompletionQueue cq = ctx.createCq(16, null, 0);
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        LoopbackProvider hca = f.provider();
        hca.calls.clear();
        assertTrue(cq.poll(4).isEmpty());
        assertFalse(hca.calls.contains("pollCq"), hca.calls.toString());

        p[0].postSend(List.of(new SendWr.RdmaWrite(7, List.of(sge(0, 64)), SIGNALED, buf + PAGE, mr.rkey())));
        List<WorkCompletion> wcs = cq.poll(4);
        assertEquals(1, wcs.size());
        assertEquals(7, wcs.getFirst().wrId());
        assertFalse(hca.calls.contains("pollCq"), "a CQ with completions is read from CQ memory too");

        hca.calls.clear();
        hca.lazyProgress = true;
        assertTrue(cq.poll(4).isEmpty());
        assertEquals(List.of("pollCq"), hca.calls.stream().filter("pollCq"::equals).toList(), "lazy progress");
    }

    @Test
    void anArmedCqRaisesOneEventThenNeedsRearming() {
        CompletionChannel ch = ctx.createCompChannel();
        CompletionQueue cq = ctx.createCq(16, ch, 0);
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        cq.reqNotify(false);
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(sge(0, 8)), SIGNALED, buf + PAGE, mr.rkey()));
        assertSame(cq, ch.getCqEvent(Duration.ofSeconds(1)).orElseThrow());
        p[0].postSend(new SendWr.RdmaWrite(2, List.of(sge(0, 8)), SIGNALED, buf + PAGE, mr.rkey()));
        assertTrue(ch.pollCqEvent().isEmpty(), "disarmed after one event");
        assertEquals(2, cq.poll(4).size());
        cq.ackEvents(1);
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, ch::destroy).errno(), "a CQ uses the channel");
        for (QueuePair q : p) {
            q.destroy();
        }
        cq.destroy();
        ch.destroy();
    }

    @Test
    void solicitedOnlyArmingWaitsForASolicitedOrFailedCompletion() {
        CompletionChannel ch = ctx.createCompChannel();
        CompletionQueue cq = ctx.createCq(16, ch, 0);
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        p[1].postRecv(List.of(RecvWr.of(1, sge(0, 64)), RecvWr.of(2, sge(64, 64))));
        cq.reqNotify(true);
        p[0].postSend(new SendWr.Send(3, List.of(sge(0, 8)), SIGNALED, null));
        assertTrue(ch.pollCqEvent().isEmpty(), "neither the send completion nor an unsolicited receive fire");
        p[0].postSend(new SendWr.Send(4, List.of(sge(0, 8)), SOLICITED, null));
        assertSame(cq, ch.pollCqEvent().orElseThrow(), "the solicited receive fires");
        cq.ackEvents(1);
        cq.reqNotify(true);
        p[0].postSend(new SendWr.RdmaWrite(5, List.of(sge(0, 8)), 0, buf, mr.rkey() ^ 0x10));
        assertSame(cq, ch.pollCqEvent().orElseThrow(), "a failed completion fires too");
        cq.ackEvents(1);
    }

    @Test
    void destroyWaitsForEventsToBeAcknowledged() throws Exception {
        CompletionChannel ch = ctx.createCompChannel();
        CompletionQueue cq = ctx.createCq(16, ch, 0);
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        cq.reqNotify(false);
        p[0].postSend(new SendWr.RdmaWrite(1, List.of(sge(0, 8)), SIGNALED, buf + PAGE, mr.rkey()));
        assertSame(cq, ch.getCqEvent(Duration.ofSeconds(1)).orElseThrow());
        for (QueuePair q : p) {
            q.destroy();
        }
        Blocked.Call<Void> destroy = Blocked.run("destroy_cq", cq::destroy)
                .awaitBlockedIn(Blocked.CONDITION_AWAIT, "dev.dmaplane.rdma.impl.CqImpl.awaitEventAcks");
        assertFalse(destroy.isDone(), "ibv_destroy_cq waits for ibv_ack_cq_events");
        cq.ackEvents(1);
        destroy.get();
        assertTrue(cq.isDestroyed());
    }

    @Test
    void resize() {
        CompletionQueue cq = ctx.createCq(8, null, 0);
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        for (int i = 0; i < 5; i++) {
            p[0].postSend(new SendWr.RdmaWrite(i, List.of(sge(0, 8)), SIGNALED, buf + PAGE, mr.rkey()));
        }
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> cq.resize(4)).errno(), "below the 5 it holds");
        cq.resize(5);
        assertEquals(5, cq.cqe());
        assertEquals(5, cq.poll(10).size());
    }

    @Test
    void anOverrunLosesTheCompletionRaisesCqErrAndStopsTheQp() {
        CompletionQueue cq = ctx.createCq(2, null, 0);
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 8);
        for (int i = 0; i < 3; i++) {
            p[0].postSend(new SendWr.RdmaWrite(i, List.of(sge(0, 8)), SIGNALED, buf + PAGE, mr.rkey()));
        }
        AsyncEvent err = ctx.pollAsyncEvent().orElseThrow();
        assertEquals(EventType.CQ_ERR, err.type());
        assertEquals(0, err.type().value());
        assertSame(cq, err.cq().orElseThrow());
        AsyncEvent fatal = ctx.pollAsyncEvent().orElseThrow();
        assertEquals(EventType.QP_FATAL, fatal.type());
        assertSame(p[0], fatal.qp().orElseThrow());
        assertEquals(QpState.ERR, p[0].state());
        assertEquals(List.of(0L, 1L), cq.poll(8).stream().map(WorkCompletion::wrId).toList(), "the third was lost");
        err.ack();
        fatal.ack();
    }

    @Test
    void theSrqLimitEventFiresOnceWhenTheQueueFallsBelowIt() {
        CompletionQueue cq = ctx.createCq(64, null, 0);
        SharedReceiveQueue srq = pd.createSrq(new SrqAttr(8, 2, 5));
        assertEquals(0, srq.query().srqLimit(), "create ignores srq_limit");
        QueuePair a = pd.createQp(new QpInitAttr(cq, cq, srq, new QpCap(8, 0, 1, 0, 0), QpType.RC, false));
        QueuePair b = pd.createQp(new QpInitAttr(cq, cq, null, new QpCap(8, 8, 1, 1, 0), QpType.RC, false));
        Fixture.connect(a, b.qpNum());
        Fixture.connect(b, a.qpNum());
        assertEquals(0, a.cap().maxRecvWr(), "receive capabilities are ignored with an SRQ");
        for (int i = 0; i < 5; i++) {
            srq.postRecv(RecvWr.of(i, sge(64L * i, 64)));
        }
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> srq.modify(new SrqAttr(0, 0, 9), SrqAttr.LIMIT)).errno());
        srq.modify(new SrqAttr(0, 0, 3), SrqAttr.LIMIT);
        assertEquals(3, srq.query().srqLimit());
        b.postSend(new SendWr.Send(10, List.of(sge(0, 8)), 0, null));
        b.postSend(new SendWr.Send(11, List.of(sge(0, 8)), 0, null));
        assertTrue(ctx.pollAsyncEvent().isEmpty(), "3 left: not below the limit");
        b.postSend(new SendWr.Send(12, List.of(sge(0, 8)), 0, null));
        AsyncEvent lim = ctx.pollAsyncEvent().orElseThrow();
        assertEquals(EventType.SRQ_LIMIT_REACHED, lim.type());
        assertEquals(15, lim.type().value());
        assertSame(srq, lim.srq().orElseThrow());
        assertEquals(0, srq.query().srqLimit(), "the limit disarms");
        b.postSend(new SendWr.Send(13, List.of(sge(0, 8)), 0, null));
        assertTrue(ctx.pollAsyncEvent().isEmpty(), "once");
        assertEquals(4, cq.poll(16).size(), "each receive completed on the QP's CQ");
        lim.ack();

        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> srq.modify(new SrqAttr(0, 0, 0), SrqAttr.MAX_WR)).errno());
        srq.modify(new SrqAttr(16, 0, 0), SrqAttr.MAX_WR);
        assertEquals(16, srq.query().maxWr());
        assertEquals(Errno.EINVAL, assertThrows(PostException.class,
                () -> srq.postRecv(RecvWr.of(20, sge(0, 1), sge(1, 1), sge(2, 1)))).errno(), "max_sge 2");
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, srq::destroy).errno());

        a.modify(QpAttr.builder().state(QpState.ERR).build());
        AsyncEvent last = ctx.pollAsyncEvent().orElseThrow();
        assertEquals(EventType.QP_LAST_WQE_REACHED, last.type());
        assertSame(a, last.qp().orElseThrow());
        assertEquals(1, ((HwSrq) srq).queued(), "the SRQ keeps what it holds: 5 posted, 4 consumed");
        Blocked.Call<Void> destroy = Blocked.run("destroy_qp", a::destroy)
                .awaitBlockedIn("java.lang.Object.wait", "dev.dmaplane.rdma.impl.ObjectImpl.awaitEventAcks");
        assertFalse(destroy.isDone(), "ibv_destroy_qp waits for its async events to be acknowledged");
        last.ack();
        assertDoesNotThrow(destroy::get);
    }

    @Test
    void objectsInUseCannotBeDestroyed() {
        CompletionQueue cq = ctx.createCq(4, null, 0);
        QueuePair qp = pd.createQp(Fixture.qpInit(cq, QpType.UD, 2));
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, cq::destroy).errno());
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, pd::destroy).errno());
        qp.destroy();
        cq.destroy();
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, cq::destroy).errno(), "already destroyed");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> cq.poll(1)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> pd.createQp(Fixture.qpInit(cq, QpType.UD, 2))).errno(), "a destroyed CQ");
    }
}
