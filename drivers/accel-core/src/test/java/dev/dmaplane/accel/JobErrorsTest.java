package dev.dmaplane.accel;

import dev.dmaplane.accel.sched.SchedPriority;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.EnumSet;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.accel.BufferObjectTest.errno;
import static dev.dmaplane.accel.BufferObjectTest.read;
import static dev.dmaplane.accel.SubmitTest.SIZE;
import static dev.dmaplane.accel.SubmitTest.VA;
import static dev.dmaplane.accel.SubmitTest.WAIT;
import static dev.dmaplane.accel.SubmitTest.awaitOk;
import static dev.dmaplane.accel.SubmitTest.boundObject;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Job errors and teardown (issue 12's "Errors"): a GPU page fault ends the job with {@code EFAULT} and bans the
 * context (xe's banned exec queue, amdgpu's guilty context: later submissions {@code ECANCELED}); a hung job ends
 * with {@code ETIME} after the engine reset {@code sched_main.c} documents and bans it too; closing a context or
 * unregistering the device cancels queued jobs with {@code ECANCELED} ({@code drm_sched_entity_kill}), every
 * fence signalled, nothing left.
 */
class JobErrorsTest {
    private AccelRig rig = new AccelRig();
    private final FenceContext user = FenceContext.allocate("test", "user fences");

    @AfterEach
    void tearDown() throws InterruptedException {
        rig.close();
    }

    static void awaitError(Fence f, Errno e) {
        assertTrue(f.await(WAIT), f + " signalled");
        assertEquals(Optional.of(e), f.error(), f.toString());
    }

    @Test
    void aPageFaultBansTheContext() {
        try (AccelContext bad = rig.device.open(); AccelContext good = rig.device.open()) {
            int x = boundObject(bad, VA, null);
            Fence fault = bad.submit(Submission.on(0, new Command.Copy(VA + 2 * SIZE, VA, 16)).writing(x));
            awaitError(fault, Errno.EFAULT);
            assertEquals(Errno.ECANCELED, errno(() -> bad.submit(Submission.on(0, Command.Launch.of("nop")))),
                    "banned: amdgpu_cs / xe_exec answer ECANCELED");
            assertEquals(Errno.ECANCELED, errno(() -> bad.submit(Submission.on(1, Command.Launch.of("nop")))), "every engine");
            int y = boundObject(good, VA, null);
            awaitOk(good.submit(Submission.on(0, new Command.Fill(VA, 4, -1)).writing(y)));
            assertArrayEquals(new byte[]{-1, -1, -1, -1}, read(good, y, 0, 4), "another context goes on");
            bad.write(x, 0, MemorySegment.ofArray(new byte[]{1}));
            assertArrayEquals(new byte[]{1}, read(bad, x, 0, 1), "the banned context's objects stay usable by the CPU");
        }
    }

    /**
     * The ban is in place once the faulting job's fence has signalled, whichever thread takes the job off the
     * context's list (the fence's callback or the next submission): 100 times, a submission right after the wait.
     */
    @Test
    void theBanHoldsForASubmissionRightAfterTheFaultsFence() {
        for (int i = 0; i < 100; i++) {
            try (AccelContext bad = rig.device.open()) {
                int x = boundObject(bad, VA, null);
                Fence fault = bad.submit(Submission.on(0, new Command.Copy(VA + 2 * SIZE, VA, 16)).writing(x));
                awaitError(fault, Errno.EFAULT);
                assertEquals(Errno.ECANCELED, errno(() -> bad.submit(Submission.on(0, Command.Launch.of("nop")))),
                        "round " + i);
            }
        }
    }

    @Test
    void aHungJobEndsWithEtimeAfterAResetAndBans() throws InterruptedException {
        rig.close();
        rig = new AccelRig(Duration.ofMillis(200));
        try (AccelContext ctx = rig.device.open()) {
            rig.gpu.hold();
            Fence hung = ctx.submit(Submission.on(0, Command.Launch.of("nop")));
            awaitError(hung, Errno.ETIME);
            assertEquals(Errno.ECANCELED, errno(() -> ctx.submit(Submission.on(0, Command.Launch.of("nop")))));
            rig.gpu.release();
        }
    }

    @Test
    void priorityIsAUserPriorityFixedAtFirstSubmission() {
        try (AccelContext ctx = rig.device.open()) {
            assertEquals(Errno.EINVAL, errno(() -> ctx.setPriority(SchedPriority.KERNEL)), "the driver's");
            assertEquals(Errno.EINVAL, errno(() -> ctx.setPriority(null)));
            ctx.setPriority(SchedPriority.HIGH);
            awaitOk(ctx.submit(Submission.on(0, Command.Launch.of("nop"))));
            assertEquals(Errno.EBUSY, errno(() -> ctx.setPriority(SchedPriority.LOW)));
        }
    }

    /** Two queued jobs behind an in-fence that never signals, and one on the hardware held by the engine's gate. */
    private List<Fence> queueJobs(AccelContext ctx, int x, Fence never) throws InterruptedException {
        Fence onHw = ctx.submit(Submission.on(1, new Command.Fill(VA, SIZE, 9)).writing(x));
        assertNotNull(rig.provider.started.poll(10, TimeUnit.SECONDS), "on the hardware");
        Fence q1 = ctx.submit(Submission.on(0, new Command.Fill(VA, SIZE, 1)).writing(x).after(never));
        Fence q2 = ctx.submit(Submission.on(0, new Command.Fill(VA, SIZE, 2)).writing(x));
        return List.of(onHw, q1, q2);
    }

    @Test
    void closeCancelsQueuedJobsAndLeavesNothing() throws InterruptedException {
        long frames = rig.machine.memory().allocatedFrames();
        int mappings = rig.machine.activeDmaMappings();
        AccelContext ctx = rig.device.open();
        int x = ctx.createBo(SIZE, Placement.HOST, EnumSet.of(Placement.HOST));
        ctx.vmBind(x, 0, VA, SIZE, true);
        int s = ctx.syncObjCreate(0);
        rig.gpu.hold();
        List<Fence> jobs = queueJobs(ctx, x, user.createFence());
        rig.gpu.release();
        ctx.close();
        awaitOk(jobs.get(0));
        awaitError(jobs.get(1), Errno.ECANCELED);
        awaitError(jobs.get(2), Errno.ECANCELED);
        assertEquals(Errno.EBADF, errno(() -> ctx.syncObjQuery(s, 0)));
        assertEquals(AccelRig.VRAM, rig.vramAvailableWhenIdle());
        assertEquals(frames, rig.machine.memory().allocatedFrames(), "host frames");
        assertEquals(mappings, rig.machine.activeDmaMappings(), "DMA mappings");
        assertTrue(rig.gpu.pageTables.isEmpty(), "the VM destroyed");
        assertEquals(List.of(), rig.device.contexts());
    }

    @Test
    void unregisterCancelsEveryContextsQueuedJobsAndLeavesNothing() throws InterruptedException {
        long frames = rig.machine.memory().allocatedFrames();
        int mappings = rig.machine.activeDmaMappings();
        AccelContext a = rig.device.open();
        AccelContext b = rig.device.open();
        int xa = boundObject(a, VA, null);
        int xb = b.createBo(SIZE, Placement.HOST, EnumSet.of(Placement.HOST));
        b.vmBind(xb, 0, VA, SIZE, true);
        Fence never = user.createFence();
        rig.gpu.hold();
        List<Fence> ja = queueJobs(a, xa, never);
        Fence qb = b.submit(Submission.on(0, Command.Launch.of("nop")).writing(xb).after(never));
        rig.gpu.release();
        rig.handle.unregister();
        awaitOk(ja.get(0));
        awaitError(ja.get(1), Errno.ECANCELED);
        awaitError(ja.get(2), Errno.ECANCELED);
        awaitError(qb, Errno.ECANCELED);
        assertEquals(Errno.EIO, errno(() -> a.submit(Submission.on(0, Command.Launch.of("nop")))));
        assertEquals(Errno.EIO, errno(() -> b.syncObjCreate(0)));
        rig.provider.close();
        assertEquals(frames, rig.machine.memory().allocatedFrames(), "host frames");
        assertEquals(mappings, rig.machine.activeDmaMappings(), "DMA mappings");
        assertEquals(List.of(), rig.machine.dmaDebug().reports(), "dma-debug");
        assertTrue(rig.gpu.pageTables.isEmpty(), "every VM destroyed");
        assertFalse(Thread.getAllStackTraces().keySet().stream().anyMatch(t -> t.getName().startsWith("drm_sched-testaccel")),
                "the provider's scheduler threads stopped");
        a.close();
        b.close();
    }
}
