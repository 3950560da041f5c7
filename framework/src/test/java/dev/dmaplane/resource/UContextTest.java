package dev.dmaplane.resource;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Handle tables, limits and disassociation as drivers/infiniband/core/rdma_core.c and uverbs_main.c implement
 * them (uobject lookup by handle, usecnt-protected destroy, ib_uverbs_disassociate → EIO), with the rdma cgroup's
 * hca_handle/hca_object limits (Documentation/admin-guide/cgroup-v2.rst, "RDMA").
 */
class UContextTest {
    private final Tracer tracer = new Tracer();
    private final HostMemory mem = new HostMemory(4L << 20);
    private final DeviceResources res = new DeviceResources("0000:04:00.0", tracer, new ResourceLimits(2, 3));
    private final List<String> log = new ArrayList<>();

    /** A protection domain stand-in. */
    final class Pd extends UObject {
        Pd() {
            super("pd");
        }

        @Override
        protected void release(RemoveReason reason) {
            log.add("pd " + handle() + " " + reason);
        }
    }

    /** A memory region stand-in that really pins a page until released. */
    final class Mr extends UObject {
        final long pfn;

        Mr(Pd pd) {
            super("mr", pd);
            pfn = mem.allocPages(0);
            mem.pinPage(pfn);
            mem.putPage(pfn);
        }

        @Override
        protected void release(RemoveReason reason) {
            mem.unpinPage(pfn);
            log.add("mr " + handle() + " " + reason);
        }
    }

    @AfterEach
    void closeMemory() {
        mem.close();
    }

    @Test
    void handlesLookupAndDependencies() {
        UContext ctx = res.open();
        Pd pd = ctx.register(new Pd());
        Mr mr = ctx.register(new Mr(pd));
        assertEquals(0, pd.handle());
        assertEquals(1, mr.handle());
        assertSame(mr, ctx.lookup(1, Mr.class));
        ErrnoException e = assertThrows(ErrnoException.class, () -> ctx.lookup(1, Pd.class));
        assertEquals(Errno.EINVAL, e.errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> ctx.lookup(7, Pd.class)).errno());
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, () -> ctx.destroy(pd.handle())).errno());
        assertFalse(pd.isDestroyed(), "a refused destroy changes nothing");
        ctx.destroy(mr.handle());
        assertEquals(0, mem.allocatedFrames(), "the MR's pin went with it");
        ctx.destroy(pd.handle());
        assertEquals(List.of("mr 1 DESTROY", "pd 0 DESTROY"), log);
        assertEquals(0, res.objectCount());
        assertEquals(0, ctx.register(new Pd()).handle(), "the lowest free handle is reused");
    }

    /**
     * Destroying an object rather than a number, as {@code file_close_fd} (fs/file.c) takes the file it finds out of
     * the table under {@code files->file_lock} and {@code filp_close} closes that file: once the number was closed and
     * given to another object, the old object's destroy leaves the new one alone and reports false; an object with
     * dependents is refused with EBUSY and stays; another context's object is not this one's.
     */
    @Test
    void destroyingAnObjectNeverDestroysTheObjectThatTookItsHandle() {
        UContext ctx = res.open();
        Pd old = ctx.register(new Pd());
        ctx.destroy(old.handle());
        Pd taker = ctx.register(new Pd());
        assertEquals(old.handle(), taker.handle(), "the freed handle was given to the new object");
        assertFalse(ctx.destroy(old), "the old object is no longer held");
        assertFalse(taker.isDestroyed());
        assertSame(taker, ctx.lookup(taker.handle(), Pd.class));

        Mr mr = ctx.register(new Mr(taker));
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, () -> ctx.destroy(taker)).errno());
        assertFalse(taker.isDestroyed(), "a refused destroy changes nothing");
        assertTrue(ctx.destroy(mr));
        assertTrue(ctx.destroy(taker));
        assertFalse(ctx.destroy(taker), "destroyed once");
        assertEquals(List.of("pd 0 DESTROY", "mr 1 DESTROY", "pd 0 DESTROY"), log);
        assertEquals(0, res.objectCount(), "each destroy returned its hca_object charge once");

        UContext other = res.open();
        Pd elsewhere = other.register(new Pd());
        assertFalse(ctx.destroy(elsewhere), "another context's object");
        assertFalse(ctx.destroy(new Pd()), "an object never registered");
        assertFalse(elsewhere.isDestroyed());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> ctx.destroy((UObject) null)).errno());
    }

    @Test
    void limitsAreChargedPerDevice() {
        UContext a = res.open();
        UContext b = res.open();
        assertEquals(Errno.EAGAIN, assertThrows(ErrnoException.class, res::open).errno());
        Pd pd = a.register(new Pd());
        a.register(new Pd());
        b.register(new Pd());
        Mr extra = new Mr(pd);
        ErrnoException e = assertThrows(ErrnoException.class, () -> b.register(extra));
        assertEquals(Errno.EAGAIN, e.errno());
        assertTrue(e.getMessage().contains("hca_object limit 3"));
        assertEquals(0, mem.allocatedFrames(), "the refused object was released (ABORT)");
        assertTrue(log.contains("mr -1 ABORT"));
        b.close();
        assertEquals(2, res.objectCount());
        assertNotNull(res.open(), "closing a context returns its hca_handle");
    }

    @Test
    void disassociationWaitsForCallsInFlightThenCutsTheContextOff() throws Exception {
        UContext ctx = res.open();
        Pd pd = ctx.register(new Pd());
        ctx.register(new Mr(pd));
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            CountDownLatch inCall = new CountDownLatch(1);
            CountDownLatch finish = new CountDownLatch(1);
            Future<?> call = pool.submit(() -> {
                try (UContext.Call c = ctx.enter()) {
                    inCall.countDown();
                    assertTrue(finish.await(10, TimeUnit.SECONDS));
                    log.add("call done");
                }
                return null;
            });
            assertTrue(inCall.await(10, TimeUnit.SECONDS));
            Future<Integer> removal = pool.submit(res::disassociateAll);
            finish.countDown();
            assertEquals(2, removal.get(10, TimeUnit.SECONDS));
            call.get(10, TimeUnit.SECONDS);
            assertEquals(List.of("call done", "mr 1 DRIVER_REMOVE", "pd 0 DRIVER_REMOVE"), log);
        } finally {
            pool.shutdownNow();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
        }
        assertEquals(0, mem.allocatedFrames(), "nothing stays pinned");
        assertEquals(UContext.State.DISASSOCIATED, ctx.state());
        assertEquals(Errno.EIO, assertThrows(ErrnoException.class, () -> ctx.lookup(0, Pd.class)).errno());
        assertEquals(Errno.EIO, assertThrows(ErrnoException.class, () -> ctx.register(new Pd())).errno());
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, res::open).errno());
        assertEquals(1, tracer.select(e -> e.kind() == TraceKind.DISASSOCIATE).size());
        ctx.close();
        assertEquals(UContext.State.CLOSED, ctx.state());
        assertTrue(res.contexts().isEmpty());
    }
}
