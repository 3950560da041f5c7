package dev.dmaplane.accel;

import dev.dmaplane.accel.sched.SchedPriority;
import dev.dmaplane.accel.spi.GpuJob;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.testing.Blocked;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import static dev.dmaplane.accel.BufferObjectTest.errno;
import static dev.dmaplane.accel.BufferObjectTest.pattern;
import static dev.dmaplane.accel.BufferObjectTest.read;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Job submission through the public API with real bytes ({@code amdgpu_cs.c} / {@code xe_exec.c} on
 * {@code drivers/gpu/drm/scheduler/sched_main.c}): copy and fill through GPU virtual addresses, implicit
 * synchronisation through reservations ({@code drm_sched_job_add_implicit_dependencies}: a read waits for writers,
 * a write for readers and writers), explicit in-fences, refusals that leave nothing behind.
 */
class SubmitTest {
    static final long VA = 0x10_0000_0000L;
    static final Duration WAIT = Duration.ofSeconds(10);
    static final int SIZE = 64 * 1024;

    private final AccelRig rig = new AccelRig();
    private final FenceContext user = FenceContext.allocate("test", "user fences");

    @AfterEach
    void tearDown() throws InterruptedException {
        rig.close();
    }

    /** A VRAM object of {@link #SIZE} bytes holding {@code data} (or zeroes), bound writable at {@code va}. */
    static int boundObject(AccelContext ctx, long va, byte[] data) {
        int h = ctx.createBo(SIZE);
        if (data != null) {
            ctx.write(h, 0, MemorySegment.ofArray(data));
        }
        ctx.vmBind(h, 0, va, SIZE, true);
        return h;
    }

    static void awaitOk(Fence f) {
        assertTrue(f.await(WAIT), f + " signalled");
        assertEquals(Optional.empty(), f.error(), f + " without error");
    }

    /**
     * Everything runnable on {@code engine} before now has run: a nop from another context, awaited. The
     * scheduler picks the oldest ready job first and the engine runs in order, so an earlier job still not
     * signalled afterwards was waiting for a dependency.
     */
    static void barrier(AccelRig rig, int engine) {
        try (AccelContext aux = rig.device.open()) {
            awaitOk(aux.submit(Submission.on(engine, Command.Launch.of("nop"))));
        }
    }

    @Test
    void copyAndFillThroughVirtualAddresses() {
        try (AccelContext ctx = rig.device.open()) {
            byte[] data = pattern(SIZE, 3);
            int src = boundObject(ctx, VA, data);
            int dst = boundObject(ctx, VA + SIZE, null);
            awaitOk(ctx.submit(Submission.on(0, new Command.Copy(VA + 100, VA + SIZE + 200, 40_000)).reading(src).writing(dst)));
            byte[] expect = new byte[SIZE];
            System.arraycopy(data, 100, expect, 200, 40_000);
            assertArrayEquals(expect, read(ctx, dst, 0, SIZE));

            awaitOk(ctx.submit(Submission.on(1, new Command.Fill(VA + SIZE, 8, 0x04030201)).writing(dst)));
            assertArrayEquals(new byte[]{1, 2, 3, 4, 1, 2, 3, 4, 0}, read(ctx, dst, 0, 9), "little-endian dwords");
        }
    }

    @Test
    void aReadWaitsForAnEarlierWriteOnTheSameObject() {
        try (AccelContext ctx = rig.device.open()) {
            int x = boundObject(ctx, VA, null);
            int y = boundObject(ctx, VA + SIZE, null);
            Fence gate = user.createFence();
            Fence write = ctx.submit(Submission.on(0, new Command.Fill(VA, SIZE, 0x5a5a5a5a)).writing(x).after(gate));
            Fence readX = ctx.submit(Submission.on(1, new Command.Copy(VA, VA + SIZE, SIZE)).reading(x).writing(y));
            barrier(rig, 1);
            assertFalse(readX.isSignaled(), "the read on engine 1 waits for the write on engine 0");
            assertTrue(ctx.reservation(x).fences(ResvUsage.WRITE).contains(write));
            assertTrue(ctx.reservation(x).fences(ResvUsage.READ).contains(readX));
            gate.signal();
            awaitOk(readX);
            assertTrue(write.isSignaled());
            byte[] expect = new byte[SIZE];
            Arrays.fill(expect, (byte) 0x5a);
            assertArrayEquals(expect, read(ctx, y, 0, SIZE), "the copy saw the fill");
        }
    }

    @Test
    void twoReadsRunConcurrentlyAndAWriteWaitsForBoth() throws InterruptedException {
        try (AccelContext ctx = rig.device.open()) {
            int x = boundObject(ctx, VA, pattern(SIZE, 1));
            int y = boundObject(ctx, VA + SIZE, null);
            int z = boundObject(ctx, VA + 2 * SIZE, null);
            rig.gpu.hold();
            Fence r0 = ctx.submit(Submission.on(0, new Command.Copy(VA, VA + SIZE, SIZE)).reading(x).writing(y));
            Fence r1 = ctx.submit(Submission.on(1, new Command.Copy(VA, VA + 2 * SIZE, SIZE)).reading(x).writing(z));
            assertNotNull(rig.provider.started.poll(10, TimeUnit.SECONDS), "one read on the hardware");
            assertNotNull(rig.provider.started.poll(10, TimeUnit.SECONDS), "the other read on the hardware beside it");
            assertEquals(List.of(r0, r1), ctx.reservation(x).fences(ResvUsage.READ), "both at READ usage");
            Fence w = ctx.submit(Submission.on(0, new Command.Fill(VA, SIZE, 0)).writing(x));
            assertEquals(List.of(w, r1), ctx.reservation(x).fences(ResvUsage.READ),
                    "the write replaced the read of its own timeline (dma_resv_add_fence)");
            rig.gpu.release();
            awaitOk(w);
            assertTrue(r0.isSignaled() && r1.isSignaled(), "the write finished after both reads");
            assertArrayEquals(pattern(SIZE, 1), read(ctx, y, 0, SIZE));
            assertArrayEquals(pattern(SIZE, 1), read(ctx, z, 0, SIZE), "the reads saw the bytes before the write");
            assertArrayEquals(new byte[SIZE], read(ctx, x, 0, SIZE));
        }
    }

    @Test
    void anExplicitInFenceHoldsTheJob() {
        try (AccelContext ctx = rig.device.open()) {
            int x = boundObject(ctx, VA, null);
            Fence in = user.createFence();
            Fence job = ctx.submit(Submission.on(0, new Command.Fill(VA, 4, 7)).writing(x).after(in));
            barrier(rig, 0);
            assertFalse(job.isSignaled(), "waits for its in-fence");
            in.signal();
            awaitOk(job);
            assertArrayEquals(new byte[]{7, 0, 0, 0}, read(ctx, x, 0, 4));
        }
    }

    @Test
    void refusedSubmissionsLeaveNothing() {
        try (AccelContext ctx = rig.device.open()) {
            int x = boundObject(ctx, VA, null);
            int s = ctx.syncObjCreate(0);
            ctx.syncObjSignal(s, 3);
            Command nop = Command.Launch.of("nop");
            assertEquals(Errno.EINVAL, errno(() -> ctx.submit(Submission.on(2, nop))), "engine");
            assertEquals(Errno.EINVAL, errno(() -> ctx.submit(Submission.on(-1, nop))), "engine");
            assertEquals(Errno.EINVAL, errno(() -> ctx.submit(Submission.on(0))), "no commands");
            assertEquals(Errno.EINVAL, errno(() -> ctx.submit(Submission.on(0, Command.Launch.of("saxpy", 1, 2)))), "kernel");
            assertEquals(Errno.EINVAL, errno(() -> ctx.submit(Submission.on(0, Command.Launch.of("nop", 1)))), "arguments");
            assertEquals(Errno.EINVAL, errno(() -> new Command.Fill(VA, 6, 0)), "fill of dwords");
            assertEquals(Errno.EINVAL, errno(() -> new Command.Copy(VA, -1, 4)));
            assertEquals(Errno.EINVAL, errno(() -> new Command.Copy(VA, VA, 0)));
            assertEquals(Errno.EINVAL, errno(() -> ctx.submit(null)));
            assertEquals(Errno.ENOENT, errno(() -> ctx.submit(Submission.on(0, nop).writing(x).reading(42))), "object");
            assertEquals(Errno.ENOENT, errno(() -> ctx.submit(Submission.on(0, nop).writing(x).waitingFor(9, 0, 0))));
            assertEquals(Errno.ENOENT, errno(() -> ctx.submit(Submission.on(0, nop).writing(x).signalling(9, 1))));
            assertEquals(Errno.EINVAL, errno(() -> ctx.submit(Submission.on(0, nop).writing(x).waitingFor(s, 4, 0))),
                    "a point not submitted, without WAIT_FOR_SUBMIT (drm_syncobj_find_fence)");
            assertEquals(Errno.EINVAL, errno(() -> ctx.submit(Submission.on(0, nop).writing(x).signalling(s, 3))),
                    "a point not after the last");
            assertEquals(Errno.EINVAL, errno(() -> ctx.submit(Submission.on(0, nop).writing(x).signalling(s, 4).signalling(s, 5))));
            assertEquals(List.of(), ctx.reservation(x).entries().stream().filter(e -> e.usage() != ResvUsage.KERNEL).toList(),
                    "no fence added");
            assertEquals(0, ctx.reservation(x).freeSlots(), "no fence slot left reserved");
            assertEquals(3, ctx.syncObjQuery(s, 1), "the timeline unchanged");
            assertTrue(rig.provider.started.isEmpty(), "no job ran");
            assertEquals("0 ns", ctx.fdinfo().get("drm-engine-copy0"));
            ctx.setPriority(SchedPriority.HIGH); // EBUSY if a refusal had left an entity behind
            awaitOk(ctx.submit(Submission.on(0, nop).writing(x).waitingFor(s, 3, 0).signalling(s, 4)));
            assertEquals(4, ctx.syncObjQuery(s, 0));
        }
    }

    @Test
    void fdinfoEngineTimeGrows() throws InterruptedException {
        try (AccelContext ctx = rig.device.open()) {
            int x = boundObject(ctx, VA, null);
            Map<String, String> before = ctx.fdinfo();
            assertEquals("0 ns", before.get("drm-engine-copy0"));
            assertEquals("0 ns", before.get("drm-engine-copy1"));
            rig.gpu.hold();
            Fence f = ctx.submit(Submission.on(0, new Command.Fill(VA, SIZE, 1)).writing(x));
            GpuJob started = rig.provider.started.poll(10, TimeUnit.SECONDS);
            assertNotNull(started);
            assertEquals(rig.device.name() + " ctx " + ctx.id(), started.name());
            assertEquals("64 KiB", ctx.fdinfo().get("drm-active-vram"), "busy while the job runs");
            rig.gpu.release();
            awaitOk(f);
            long first = nanos(ctx.fdinfo().get("drm-engine-copy0"));
            assertTrue(first > 0, "busy time from scheduled to finished");
            rig.gpu.hold();
            Fence g = ctx.submit(Submission.on(0, new Command.Fill(VA, SIZE, 2)).writing(x));
            assertNotNull(rig.provider.started.poll(10, TimeUnit.SECONDS));
            rig.gpu.release();
            awaitOk(g);
            Map<String, String> after = ctx.fdinfo();
            assertTrue(nanos(after.get("drm-engine-copy0")) > first, "it grows: " + after);
            assertEquals("0 ns", after.get("drm-engine-copy1"));
            assertEquals("0 KiB", after.get("drm-active-vram"));
            assertEquals("64 KiB", after.get("drm-total-vram"));
        }
    }

    static long nanos(String value) {
        assertTrue(value.endsWith(" ns"), value);
        return Long.parseLong(value.substring(0, value.length() - 3));
    }

    /**
     * {@code drm_sched_job_arm}: jobs of one entity must be pushed in the order they were armed. Two threads
     * submit to one context's engine at once, many times; the entity's finished fences signal in seqno order.
     */
    @Test
    void concurrentSubmittersKeepOneEntityInSeqnoOrder() throws Exception {
        try (AccelContext ctx = rig.device.open()) {
            int x = boundObject(ctx, VA, null);
            List<Fence> fences = new CopyOnWriteArrayList<>();
            Blocked.Action submitter = () -> {
                for (int i = 0; i < 200; i++) {
                    fences.add(ctx.submit(Submission.on(0, new Command.Fill(VA, 4, i)).reading(x)));
                }
            };
            Blocked.Call<Void> a = Blocked.run("submitter a", submitter);
            Blocked.Call<Void> b = Blocked.run("submitter b", submitter);
            a.get();
            b.get();
            List<Fence> bySeqno = fences.stream().sorted(Comparator.comparingLong(Fence::seqno)).toList();
            for (Fence f : bySeqno) {
                awaitOk(f);
            }
            for (int i = 1; i < bySeqno.size(); i++) {
                assertTrue(bySeqno.get(i - 1).timestampNanos().getAsLong() <= bySeqno.get(i).timestampNanos().getAsLong(),
                        bySeqno.get(i - 1) + " signalled after " + bySeqno.get(i));
            }
        }
    }
}
