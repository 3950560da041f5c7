package dev.dmaplane.accel.sync;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Binary and timeline sync objects as {@code drivers/gpu/drm/drm_syncobj.c} defines them: create, replace, reset,
 * signal, WAIT_ALL / any with WAIT_FOR_SUBMIT, timeline signal / query / wait / transfer, and the ioctls' errnos.
 */
class SyncObjTest {
    private static final Duration WAIT = Duration.ofSeconds(10);
    private static final Duration SHORT = Duration.ofMillis(20);

    private final FenceContext ctx = FenceContext.allocate("test", "ring");

    private static Errno errno(Runnable r) {
        return assertThrows(ErrnoException.class, r::run).errno();
    }

    /** drm_syncobj_create_ioctl: only CREATE_SIGNALED is a valid flag; a signalled object waits for nothing. */
    @Test
    void createSignaledAndBadFlags() {
        assertEquals(Errno.EINVAL, errno(() -> SyncObj.create("x", 2)));
        SyncObj s = SyncObj.create("s", SyncObj.CREATE_SIGNALED);
        assertEquals(0, SyncObjWait.await(List.of(s), 0, Duration.ZERO));
        SyncObj empty = SyncObj.create("e", 0);
        assertEquals(Errno.EINVAL, errno(() -> SyncObjWait.await(List.of(empty), 0, Duration.ZERO)),
                "no fence and no WAIT_FOR_SUBMIT");
        assertEquals(Errno.EINVAL, errno(() -> empty.findFence(0, 0, Duration.ZERO)));
    }

    /** drm_syncobj_array_wait_timeout: any returns the first signalled index, all waits for all, timeout is ETIME. */
    @Test
    void binaryWaitAnyAllAndTimeout() {
        Fence f1 = ctx.createFence();
        Fence f2 = ctx.createFence();
        SyncObj a = SyncObj.create("a", 0);
        SyncObj b = SyncObj.create("b", 0);
        a.replaceFence(f1);
        b.replaceFence(f2);
        assertEquals(Errno.ETIME, errno(() -> SyncObjWait.await(List.of(a, b), 0, SHORT)));
        f2.signal();
        assertEquals(1, SyncObjWait.await(List.of(a, b), 0, WAIT));
        assertEquals(Errno.ETIME, errno(() -> SyncObjWait.await(List.of(a, b), SyncObj.WAIT_ALL, SHORT)));
        f1.signal();
        SyncObjWait.await(List.of(a, b), SyncObj.WAIT_ALL, WAIT);
        a.reset();
        assertEquals(Errno.EINVAL, errno(() -> SyncObjWait.await(List.of(a), 0, WAIT)));
        assertEquals(Errno.EINVAL, errno(() -> SyncObjWait.await(List.of(), 0, WAIT)));
        assertEquals(Errno.EINVAL, errno(() -> SyncObjWait.await(List.of(b), SyncObj.WAIT_AVAILABLE, WAIT)),
                "WAIT_AVAILABLE is for timeline waits only");
    }

    /** drm_syncobj_array_wait_timeout with WAIT_FOR_SUBMIT: the wait covers a fence submitted later. */
    @Test
    void waitForSubmitSeesAFenceSubmittedLater() throws Exception {
        SyncObj s = SyncObj.create("s", 0);
        Fence f = ctx.createFence();
        ExecutorService pool = Executors.newSingleThreadExecutor();
        try {
            CountDownLatch waiting = new CountDownLatch(1);
            Future<Integer> waiter = pool.submit(() -> {
                waiting.countDown();
                return SyncObjWait.await(List.of(s), SyncObj.WAIT_FOR_SUBMIT, WAIT);
            });
            assertTrue(waiting.await(10, TimeUnit.SECONDS));
            s.replaceFence(f);
            assertFalse(waiter.isDone(), "returned before the fence signalled");
            f.signal();
            assertEquals(0, waiter.get(10, TimeUnit.SECONDS));
        } finally {
            pool.shutdownNow();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
        }
        SyncObj never = SyncObj.create("never", 0);
        assertEquals(Errno.ETIME, errno(() -> SyncObjWait.await(List.of(never), SyncObj.WAIT_FOR_SUBMIT, SHORT)));
        assertEquals(Errno.ETIME, errno(() -> never.findFence(0, SyncObj.WAIT_FOR_SUBMIT, SHORT)));
    }

    /**
     * Timeline points as dma_fence_chain: a point is signalled once every point up to it is; QUERY reports the last
     * signalled (or with LAST_SUBMITTED the last added); waiting on an unsubmitted point is EINVAL without
     * WAIT_FOR_SUBMIT; WAIT_AVAILABLE returns once submitted.
     */
    @Test
    void timelinePointsQueryAndWait() {
        SyncObj t = SyncObj.create("t", 0);
        Fence p1 = ctx.createFence();
        Fence p3 = ctx.createFence();
        t.addPoint(p1, 1);
        t.addPoint(p3, 3);
        assertTrue(t.isTimeline());
        assertEquals(0, t.query(0));
        assertEquals(3, t.query(SyncObj.QUERY_LAST_SUBMITTED));
        assertEquals(Errno.EINVAL, errno(() -> t.query(2)));
        assertEquals(Errno.EINVAL, errno(() -> t.addPoint(ctx.createFence(), 2)), "point going backward");
        p3.signal();
        assertEquals(0, t.query(0), "point 3 waits for point 1");
        assertFalse(t.findFence(2, 0, WAIT).isSignaled(), "point 2 is covered by point 3, which waits for 1");
        assertEquals(Errno.ETIME, errno(() -> SyncObjWait.timelineWait(List.of(t), new long[] {3}, 0, SHORT)));
        p1.signal();
        assertEquals(3, t.query(0));
        assertEquals(0, SyncObjWait.timelineWait(List.of(t), new long[] {2}, 0, WAIT));
        assertEquals(Errno.EINVAL, errno(() -> SyncObjWait.timelineWait(List.of(t), new long[] {4}, 0, WAIT)));
        assertEquals(0, SyncObjWait.timelineWait(List.of(t), new long[] {3}, SyncObj.WAIT_AVAILABLE, WAIT));
        assertEquals(Errno.ETIME, errno(() -> SyncObjWait.timelineWait(List.of(t), new long[] {4},
                SyncObj.WAIT_AVAILABLE, SHORT)));
        t.timelineSignal(4);
        assertEquals(4, t.query(0));
        assertEquals(Errno.EINVAL, errno(() -> SyncObjWait.timelineWait(List.of(t), new long[] {1, 2}, 0, WAIT)));
        assertEquals(Errno.EINVAL, errno(() -> SyncObjWait.timelineWait(List.of(t), new long[] {1}, 8, WAIT)));
    }

    /** A binary object has no points: asking for point 1 of it is EINVAL (dma_fence_chain_find_seqno on a plain fence). */
    @Test
    void pointOnABinaryObjectIsEinval() {
        SyncObj b = SyncObj.create("b", SyncObj.CREATE_SIGNALED);
        assertEquals(Errno.EINVAL, errno(() -> b.findFence(1, 0, WAIT)));
        assertEquals(0, b.query(0));
    }

    /** DRM_IOCTL_SYNCOBJ_TRANSFER: timeline point to binary (dst point 0) and binary to timeline point. */
    @Test
    void transferBetweenBinaryAndTimeline() {
        SyncObj t = SyncObj.create("t", 0);
        SyncObj b = SyncObj.create("b", 0);
        Fence f = ctx.createFence();
        t.addPoint(f, 5);
        b.transferFrom(t, 5, 0, 0, WAIT);
        assertSame(f, b.findFence(0, 0, WAIT));
        SyncObj t2 = SyncObj.create("t2", 0);
        t2.transferFrom(b, 0, 7, 0, WAIT);
        assertEquals(7, t2.query(SyncObj.QUERY_LAST_SUBMITTED));
        assertEquals(0, t2.query(0));
        f.signal();
        assertEquals(7, t2.query(0));
        assertEquals(Errno.EINVAL, errno(() -> t2.transferFrom(t, 9, 8, 0, WAIT)), "point 9 not submitted");
    }
}
