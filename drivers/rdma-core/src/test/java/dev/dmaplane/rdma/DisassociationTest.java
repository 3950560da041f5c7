package dev.dmaplane.rdma;

import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AddressHandle;
import dev.dmaplane.rdma.verbs.SharedReceiveQueue;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.AsyncEvent;
import dev.dmaplane.rdma.verbs.CompletionChannel;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.MemoryWindow;
import dev.dmaplane.rdma.verbs.MwBindInfo;
import dev.dmaplane.rdma.verbs.MwType;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.SrqAttr;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.testing.Blocked;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Device removal under open contexts, as {@code ib_unregister_device} and uverbs' {@code ib_uverbs_free_hw_resources}
 * do it ({@code drivers/infiniband/core/uverbs_main.c}, {@code rdma_core.c}: DEVICE_FATAL queued to every file,
 * then every object destroyed with {@code RDMA_REMOVE_DRIVER_REMOVE}, later calls failing with {@code EIO}), with
 * the flush of outstanding work a provider gives a fatal device (WR_FLUSH_ERR on CQs that stay pollable), and the
 * framework's promise: nothing stays pinned or mapped, dma-debug finds no leak.
 */
@Timeout(30)
class DisassociationTest {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private final Fixture f = new Fixture();
    private final PciFunction hca = f.machine.pci().function("04:00.0");

    @AfterEach
    void close() {
        f.close();
    }

    /** A context holding one of everything, with work outstanding on a paused HCA. */
    private final class Busy {
        final VerbsContext ctx = f.open();
        final ProtectionDomain pd = ctx.allocPd();
        final long buf = f.alloc(16 * PAGE);
        final MemoryRegion mr = pd.regMr(buf, 8 * PAGE, Fixture.ALL_REMOTE | Access.MW_BIND);
        final MemoryRegion odp = pd.regMr(buf + 8 * PAGE, 8 * PAGE, Fixture.ALL_REMOTE | Access.ON_DEMAND);
        final CompletionChannel ch = ctx.createCompChannel();
        final CompletionQueue cq = ctx.createCq(64, ch, 0);
        final QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 16);
        final MemoryWindow mw = pd.allocMw(MwType.TYPE_1);
        final SharedReceiveQueue srq = pd.createSrq(new SrqAttr(8, 1, 0));
        final AddressHandle ah = pd.createAh(AhAttr.roce(Gid.parse("::ffff:10.0.0.7"), 1, 1));

        Busy() {
            mw.bind(p[0], new MwBindInfo(mr, buf, PAGE, Access.REMOTE_READ), 99, 0);
            p[0].postSend(new SendWr.RdmaWrite(98, List.of(new Sge(buf, 8, mr.lkey())), SIGNALED, buf + 9 * PAGE, odp.rkey()));
            assertEquals(2, cq.poll(4).size() + 1, "the bind is unsignaled, the ODP write completes");
            srq.postRecv(RecvWr.of(50));
            f.provider().pause();
            p[1].postRecv(List.of(RecvWr.of(10, new Sge(buf, 64, mr.lkey())), RecvWr.of(11, new Sge(buf + 64, 64, mr.lkey()))));
            p[0].postSend(List.of(
                    new SendWr.Send(20, List.of(new Sge(buf, 8, mr.lkey())), SIGNALED, null),
                    new SendWr.Send(21, List.of(new Sge(buf, 8, mr.lkey())), 0, null),
                    new SendWr.RdmaWrite(22, List.of(new Sge(buf, 8, mr.lkey())), 0, buf + PAGE, mr.rkey())));
            assertEquals(3, ((HwQp) p[0]).sendOutstanding());
        }
    }

    private void assertCutOff(Busy b, long pinsBefore) {
        AsyncEvent fatal = b.ctx.pollAsyncEvent().orElseThrow();
        assertEquals(EventType.DEVICE_FATAL, fatal.type());
        assertEquals(8, fatal.type().value());
        assertTrue(fatal.qp().isEmpty());
        fatal.ack();

        List<WorkCompletion> flushed = b.cq.poll(64);
        assertEquals(Set.of(10L, 11L, 20L, 21L, 22L), flushed.stream().map(WorkCompletion::wrId).collect(Collectors.toSet()),
                "every outstanding request, signaled or not, comes back");
        assertTrue(flushed.stream().allMatch(w -> w.status() == WcStatus.WR_FLUSH_ERR));
        assertTrue(b.cq.poll(64).isEmpty());

        for (Runnable call : List.<Runnable>of(b.ctx::allocPd, () -> b.ctx.queryPort(1), b.mr::destroy,
                () -> b.p[0].postSend(new SendWr.Send(1, List.of(), 0, null)),
                () -> b.p[0].modify(Fixture.toRts(QpType.RC)), () -> b.pd.regMr(b.buf, PAGE, 0))) {
            assertEquals(Errno.EIO, assertThrows(ErrnoException.class, call::run).errno());
        }
        assertTrue(b.ctx.isDisassociated());
        assertTrue(b.mr.isDestroyed() && b.p[0].isDestroyed() && b.cq.isDestroyed() && b.mw.isDestroyed());
        assertEquals(pinsBefore, f.machine.memory().pinsOutstanding(), "nothing stays pinned");
        assertEquals(0, f.mm.pinnedPages());
        b.ctx.close();
        assertEquals(Errno.EBADF, assertThrows(ErrnoException.class, b.ctx::pollAsyncEvent).errno());
    }

    @Test
    void unregisteringCutsEveryContextOffAndLeavesNothingPinnedOrMapped() {
        long pins = f.machine.memory().pinsOutstanding();
        RdmaDevice dev = f.device();
        Busy b = new Busy();
        VerbsContext other = f.open();
        other.allocPd().regMr(f.alloc(PAGE), PAGE, 0);
        assertTrue(f.machine.activeDmaMappings(hca) >= 3);
        long since = f.machine.tracer().lastSeq();

        f.provider().handle().unregister();

        assertEquals(0, f.machine.activeDmaMappings(hca), "nothing stays mapped");
        assertEquals(0, dev.objectCount());
        assertFalse(dev.isRegistered());
        assertEquals(List.of("rxe1"), f.core.devices().stream().map(RdmaDevice::name).toList());
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> dev.open(f.mm)).errno());
        assertEquals(2, f.machine.tracer().since(since).stream().filter(e -> e.kind() == TraceKind.DISASSOCIATE).count());
        assertCutOff(b, pins);
        assertEquals(EventType.DEVICE_FATAL, other.pollAsyncEvent().orElseThrow().type());
        f.provider().handle().unregister();
    }

    @Test
    void surpriseRemovalOfTheHcaGoesThroughTheDriverAndLeaksNothing() {
        long pins = f.machine.memory().pinsOutstanding();
        Busy b = new Busy();
        f.machine.hotUnplug(hca);
        assertFalse(hca.isPresent());
        assertTrue(f.machine.dmaDebug().reports(DmaDebugReport.Kind.LEAK_AT_UNBIND).isEmpty(),
                "the core unmapped every region before the driver's remove returned");
        assertCutOff(b, pins);
    }

    @Test
    void disassociationWaitsForCallsInFlight() throws Exception {
        VerbsContext ctx = f.open();
        ProtectionDomain pd = ctx.allocPd();
        CompletionQueue cq = ctx.createCq(8, null, 0);
        QueuePair[] p = Fixture.pair(pd, cq, QpType.RC, 4);
        CountDownLatch inside = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        f.provider().beforePost = () -> {
            inside.countDown();
            try {
                release.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        };
        CompletableFuture<Void> post = CompletableFuture.runAsync(
                () -> p[0].postSend(new SendWr.Send(1, List.of(), SIGNALED, null)));
        assertTrue(inside.await(5, TimeUnit.SECONDS));
        Blocked.Call<Void> unregister = Blocked.run("unregister", () -> f.provider().handle().unregister());
        try {
            unregister.awaitBlockedIn("java.util.concurrent.locks.ReentrantReadWriteLock$WriteLock.lock",
                    "dev.dmaplane.resource.UContext.disassociate", "dev.dmaplane.resource.DeviceResources.disassociateAll",
                    "dev.dmaplane.rdma.impl.DeviceImpl.unregister");
            assertFalse(unregister.isDone(), "disassociation waits for the post in flight");
        } finally {
            release.countDown(); // also when the check fails: the post holds the context, and close() would wait for it
        }
        post.get(5, TimeUnit.SECONDS);
        unregister.get();
        assertEquals(Errno.EIO, assertThrows(ErrnoException.class, ctx::allocPd).errno());
        assertEquals(1, cq.poll(4).size(), "the request posted before removal was flushed or completed");
    }
}
