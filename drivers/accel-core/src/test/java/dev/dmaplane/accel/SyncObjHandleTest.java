package dev.dmaplane.accel;

import dev.dmaplane.accel.sync.SyncFile;
import dev.dmaplane.accel.sync.SyncObj;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.testing.Blocked;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.concurrent.ExecutionException;

import static dev.dmaplane.accel.BufferObjectTest.errno;
import static dev.dmaplane.accel.SubmitTest.VA;
import static dev.dmaplane.accel.SubmitTest.awaitOk;
import static dev.dmaplane.accel.SubmitTest.barrier;
import static dev.dmaplane.accel.SubmitTest.boundObject;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Sync-object handles of a context ({@code drivers/gpu/drm/drm_syncobj.c}: the handle table from 1,
 * {@code drm_syncobj_destroy}'s {@code EINVAL}, {@code drm_syncobj_find}'s {@code ENOENT}, waits ending in
 * {@code ETIME}, timelines, transfer, sync_file export and import, WAIT_FOR_SUBMIT) and their use by submissions
 * between two contexts.
 */
class SyncObjHandleTest {
    private static final Duration SHORT = Duration.ofMillis(50);

    private final AccelRig rig = new AccelRig();
    private final FenceContext user = FenceContext.allocate("test", "user fences");

    @AfterEach
    void tearDown() throws InterruptedException {
        rig.close();
    }

    @Test
    void handlesCreateDestroyWaitSignalQueryTransfer() {
        try (AccelContext ctx = rig.device.open()) {
            int a = ctx.syncObjCreate(SyncObj.CREATE_SIGNALED);
            int b = ctx.syncObjCreate(0);
            assertEquals(1, a, "sync-object handles start at 1, apart from GEM handles");
            assertEquals(2, b);
            assertEquals(Errno.EINVAL, errno(() -> ctx.syncObjCreate(4)));
            assertEquals(0, ctx.syncObjWait(new int[]{a}, new long[]{0}, SyncObj.WAIT_ALL, SHORT));
            assertEquals(Errno.EINVAL, errno(() -> ctx.syncObjWait(new int[]{a, b}, new long[]{0, 0}, SyncObj.WAIT_ALL, SHORT)),
                    "b holds no fence and WAIT_FOR_SUBMIT is not set");
            assertEquals(Errno.ETIME, errno(() -> ctx.syncObjWait(new int[]{a, b}, new long[]{0, 0},
                    SyncObj.WAIT_ALL | SyncObj.WAIT_FOR_SUBMIT, SHORT)));
            assertEquals(0, ctx.syncObjWait(new int[]{a, b}, new long[]{0, 0}, SyncObj.WAIT_FOR_SUBMIT, SHORT), "ANY: a");
            ctx.syncObjSignal(b, 1);
            ctx.syncObjSignal(b, 5);
            assertEquals(5, ctx.syncObjQuery(b, 0));
            assertEquals(Errno.EINVAL, errno(() -> ctx.syncObjSignal(b, 5)), "not after the last point");
            assertEquals(Errno.ETIME, errno(() -> ctx.syncObjWait(new int[]{b}, new long[]{6}, SyncObj.WAIT_FOR_SUBMIT, SHORT)));
            int c = ctx.syncObjCreate(0);
            ctx.syncObjTransfer(b, 5, c, 0, 0);
            assertEquals(0, ctx.syncObjWait(new int[]{c}, new long[]{0}, 0, SHORT), "point 5 became c's fence");
            ctx.syncObjReset(c);
            assertEquals(Errno.EINVAL, errno(() -> ctx.syncObjExportSyncFile(c, 0)), "nothing to export after reset");
            ctx.syncObjDestroy(a);
            assertEquals(Errno.EINVAL, errno(() -> ctx.syncObjDestroy(a)), "drm_syncobj_destroy: EINVAL");
            assertEquals(Errno.ENOENT, errno(() -> ctx.syncObjQuery(a, 0)), "lookups: ENOENT");
            assertEquals(Errno.ENOENT, errno(() -> ctx.syncObjWait(new int[]{a}, new long[]{0}, 0, SHORT)));
            assertEquals(Errno.ENOENT, errno(() -> ctx.syncObjSignal(a, 0)));
            assertEquals(Errno.ENOENT, errno(() -> ctx.syncObjTransfer(a, 0, c, 0, 0)));
            assertEquals(a, ctx.syncObjCreate(0), "the lowest free handle again");
        }
    }

    @Test
    void timelineChainBetweenTwoContexts() throws ExecutionException, InterruptedException {
        try (AccelContext a = rig.device.open(); AccelContext b = rig.device.open()) {
            int xa = boundObject(a, VA, null);
            int xb = boundObject(b, VA, null);
            int ta = a.syncObjCreate(0);
            int tb = b.syncObjImport(a.syncObjExport(ta));
            assertSame(a.syncObjExport(ta), b.syncObjExport(tb), "one object, two handles");
            Fence go = user.createFence();
            // b's job waits for point 1, which a has not submitted yet: WAIT_FOR_SUBMIT blocks the submission
            Blocked.Call<Fence> second = Blocked.start("submit b", () -> b.submit(Submission.on(1,
                    new Command.Fill(VA, 4, 2)).writing(xb).waitingFor(tb, 1, SyncObj.WAIT_FOR_SUBMIT).signalling(tb, 2)));
            second.awaitBlockedIn("dev.dmaplane.accel.sync.SyncObjWait$Waker.await", "dev.dmaplane.accel.sync.SyncObjWait.awaitSubmit");
            Fence first = a.submit(Submission.on(0, new Command.Fill(VA, 4, 1)).writing(xa).after(go).signalling(ta, 1));
            Fence then = second.get();
            barrier(rig, 1);
            assertFalse(then.isSignaled(), "b's job waits for a's point 1");
            assertEquals(0, a.syncObjQuery(ta, 0));
            assertEquals(2, a.syncObjQuery(ta, SyncObj.QUERY_LAST_SUBMITTED));
            go.signal();
            a.syncObjWait(new int[]{ta}, new long[]{2}, SyncObj.WAIT_ALL, SubmitTest.WAIT); // ETIME if not
            assertTrue(first.isSignaled() && then.isSignaled());
            assertTrue(first.timestampNanos().getAsLong() <= then.timestampNanos().getAsLong(), "in order");
            assertEquals(2, b.syncObjQuery(tb, 0));
        }
    }

    @Test
    void exportToSyncFileAndImportBack() {
        try (AccelContext a = rig.device.open(); AccelContext b = rig.device.open()) {
            int xa = boundObject(a, VA, null);
            int sa = a.syncObjCreate(0);
            Fence go = user.createFence();
            Fence job = a.submit(Submission.on(0, Command.Launch.of("nop")).writing(xa).after(go).signalling(sa, 0));
            SyncFile file = a.syncObjExportSyncFile(sa, 0);
            assertSame(job, file.fence());
            assertEquals(0, file.status());
            int sb = b.syncObjCreate(0);
            b.syncObjImportSyncFile(sb, 3, file);
            assertEquals(3, b.syncObjQuery(sb, SyncObj.QUERY_LAST_SUBMITTED));
            Fence waiter = b.submit(Submission.on(0, Command.Launch.of("nop")).waitingFor(sb, 3, 0));
            barrier(rig, 1);
            assertFalse(waiter.isSignaled());
            int back = a.syncObjCreate(0);
            a.syncObjImportSyncFile(back, 0, b.syncObjExportSyncFile(sb, 3));
            go.signal();
            awaitOk(waiter);
            assertEquals(1, file.status());
            assertEquals(3, b.syncObjQuery(sb, 0));
            assertEquals(0, a.syncObjWait(new int[]{back}, new long[]{0}, 0, SubmitTest.WAIT), "round trip");
        }
    }

    /**
     * A submission waiting with WAIT_FOR_SUBMIT for a point nobody submits ends as {@code drm_syncobj_find_fence}
     * ends it: {@code ETIME} after the kernel's fixed 5 s ({@code DRM_SYNCOBJ_WAIT_FOR_SUBMIT_TIMEOUT}), and the
     * refused submission changed nothing: no job, no point, and the next submission goes through.
     */
    @Test
    void aWaitForSubmitPointNobodySubmitsIsEtimeAndChangesNothing() {
        try (AccelContext ctx = rig.device.open()) {
            int x = boundObject(ctx, VA, null);
            int t = ctx.syncObjCreate(0);
            assertEquals(Errno.ETIME, errno(() -> ctx.submit(Submission.on(0, new Command.Fill(VA, 4, 7)).writing(x)
                    .waitingFor(t, 1, SyncObj.WAIT_FOR_SUBMIT).signalling(t, 2))));
            assertEquals(0, ctx.syncObjQuery(t, SyncObj.QUERY_LAST_SUBMITTED), "point 2 was never added");
            Fence next = ctx.submit(Submission.on(0, new Command.Fill(VA, 4, 8)).writing(x).signalling(t, 1));
            assertTrue(next.await(SubmitTest.WAIT) && next.error().isEmpty(), "the context is not banned: " + next);
            MemorySegment word = MemorySegment.ofArray(new byte[4]);
            ctx.read(x, 0, word);
            assertEquals(8, word.get(ValueLayout.JAVA_INT_UNALIGNED, 0), "only the second job ran (its fill, 8, not 7)");
        }
    }
}
