package dev.dmaplane.accel.sched;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.fence.Reservation;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.testing.Blocked;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The kunit scenarios of {@code drivers/gpu/drm/scheduler/tests/tests_basic.c} on a mock ring
 * ({@code tests/mock_scheduler.c}), plus the run-queue, credit and dependency rules of {@code sched_main.c} and
 * {@code sched_entity.c}.
 */
class SchedulerTest {
    private static final Duration WAIT = Duration.ofSeconds(10);
    private static final Duration LONG_TIMEOUT = Duration.ofSeconds(60);

    private final Tracer tracer = new Tracer();
    private final List<Scheduler> schedulers = new ArrayList<>();

    private Scheduler scheduler(MockBackend mock, int credits, Duration timeout) {
        Scheduler s = Scheduler.create(new SchedulerConfig("mock", credits, timeout), mock, tracer);
        mock.scheduler = s;
        schedulers.add(s);
        return s;
    }

    @AfterEach
    void finiAll() {
        for (Scheduler s : schedulers) {
            s.fini();
            assertFalse(s.isWorkerAlive(), "worker of " + s + " still running");
        }
    }

    private static SchedJob submit(SchedEntity e, int credits, Object payload, Fence... deps) {
        SchedJob j = SchedJob.init(e, credits, payload);
        for (Fence d : deps) {
            j.addDependency(d);
        }
        j.arm();
        j.push();
        return j;
    }

    private static void await(Fence f) {
        assertTrue(f.await(WAIT), f + " did not signal within " + WAIT);
    }

    private static void awaitFreed(MockBackend mock, int jobs) {
        try {
            assertTrue(mock.freePermits.tryAcquire(jobs, WAIT.toSeconds(), TimeUnit.SECONDS),
                    jobs + " jobs not freed within " + WAIT);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }

    /** tests_basic.c {@code drm_sched_basic_submit} with 100 jobs: in order, every fence signalled, no error. */
    @Test
    void hundredJobsOnOneEntityRunInOrder() {
        MockBackend mock = new MockBackend(true);
        Scheduler s = scheduler(mock, 16, LONG_TIMEOUT);
        SchedEntity e = SchedEntity.create(s, SchedPriority.NORMAL);
        List<SchedJob> jobs = new ArrayList<>();
        for (int i = 0; i < 100; i++) {
            jobs.add(submit(e, 1, i));
        }
        await(jobs.getLast().finished());
        assertEquals(jobs, mock.runOrder);
        for (int i = 0; i < jobs.size(); i++) {
            SchedJob j = jobs.get(i);
            assertTrue(j.scheduled().isSignaled() && j.finished().isSignaled());
            assertEquals(Optional.empty(), j.finished().error());
            assertEquals(i + 1, j.finished().seqno());
            if (i > 0) {
                assertTrue(j.finished().timestampNanos().getAsLong()
                        >= jobs.get(i - 1).finished().timestampNanos().getAsLong());
            }
        }
        awaitFreed(mock, 100);
        assertEquals(0, s.creditCount());
        assertEquals(200, tracer.select(ev -> ev.kind() == TraceKind.SCHED
                && (ev.detail().startsWith("run") || ev.detail().startsWith("done"))).size());
    }

    /** tests_basic.c {@code drm_sched_basic_entities_chain}: 4 entities, each job waits for the one before. */
    @Test
    void fourEntitiesInADependencyChain() {
        MockBackend mock = new MockBackend(false);
        Scheduler s = scheduler(mock, 16, LONG_TIMEOUT);
        List<SchedEntity> entities = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            entities.add(SchedEntity.create(s, SchedPriority.NORMAL));
        }
        List<SchedJob> jobs = new ArrayList<>();
        Fence prev = null;
        for (SchedEntity e : entities) {
            SchedJob j = prev == null ? submit(e, 1, null) : submit(e, 1, null, prev);
            jobs.add(j);
            prev = j.finished();
        }
        for (int i = 0; i < 4; i++) {
            await(jobs.get(i).scheduled());
            for (int k = i + 1; k < 4; k++) {
                assertFalse(jobs.get(k).scheduled().isSignaled(), "job " + k + " ran before job " + i + " finished");
            }
            assertTrue(mock.completeNext());
            await(jobs.get(i).finished());
        }
        assertEquals(jobs, mock.runOrder);
    }

    /**
     * tests_basic.c {@code drm_sched_basic_entity_cleanup}, sched_entity.c {@code drm_sched_entity_kill}: an entity
     * destroyed with half its jobs still queued. Jobs on the ring finish normally; the queued ones never run, and
     * their finished fences signal with ECANCELED after the last job on the ring.
     */
    @Test
    void entityFreedWithHalfItsJobsPending() {
        MockBackend mock = new MockBackend(false);
        Scheduler s = scheduler(mock, 5, LONG_TIMEOUT);
        SchedEntity e = SchedEntity.create(s, SchedPriority.NORMAL);
        List<SchedJob> jobs = new ArrayList<>();
        for (int i = 0; i < 10; i++) {
            jobs.add(submit(e, 1, i));
        }
        await(jobs.get(4).scheduled());
        assertEquals(5, mock.onRing());
        e.destroy(Duration.ZERO);
        assertEquals(0, e.queued());
        for (int i = 5; i < 10; i++) {
            assertFalse(jobs.get(i).finished().isSignaled(), "killed job signalled before the ring drained");
        }
        while (mock.completeNext()) {
            Thread.onSpinWait();
        }
        for (int i = 0; i < 10; i++) {
            SchedJob j = jobs.get(i);
            await(j.finished());
            assertTrue(j.scheduled().isSignaled());
            assertEquals(i < 5 ? Optional.empty() : Optional.of(Errno.ECANCELED), j.finished().error(), "job " + i);
        }
        assertEquals(jobs.subList(0, 5), mock.runOrder);
        awaitFreed(mock, 10);
        SchedJob late = SchedJob.init(e, 1, null);
        assertEquals(Errno.ECANCELED, assertThrows(ErrnoException.class, late::arm).errno());
    }

    /**
     * sched_entity.c {@code drm_sched_entity_kill} and {@code drm_sched_entity_kill_jobs_work}: an entity killed with
     * 20 000 jobs queued behind one on the ring. When the ring's job finishes, every queued job is cancelled in
     * queue order, ECANCELED, by the signalling thread without nesting a callback per job (which overflowed the
     * stack).
     */
    @Test
    void killWithTwentyThousandQueuedJobsCancelsThemInOrder() {
        int queued = 20_000;
        MockBackend mock = new MockBackend(false);
        Scheduler s = scheduler(mock, 1, LONG_TIMEOUT);
        SchedEntity e = SchedEntity.create(s, SchedPriority.NORMAL);
        SchedJob onRing = submit(e, 1, null);
        await(onRing.scheduled());
        List<SchedJob> jobs = new ArrayList<>();
        List<Long> signalOrder = Collections.synchronizedList(new ArrayList<>());
        for (int i = 0; i < queued; i++) {
            SchedJob j = submit(e, 1, i);
            j.finished().addCallback(f -> signalOrder.add(f.seqno()));
            jobs.add(j);
        }
        e.kill();
        assertEquals(0, e.queued());
        assertFalse(jobs.getFirst().finished().isSignaled(), "cancelled before the job on the ring finished");
        assertTrue(mock.completeNext());
        await(onRing.finished());
        assertEquals(Optional.empty(), onRing.finished().error());
        for (SchedJob j : jobs) {
            assertTrue(j.scheduled().isSignaled(), j + " scheduled fence");
            assertTrue(j.finished().isSignaled(), j + " finished fence");
            assertEquals(Optional.of(Errno.ECANCELED), j.finished().error(), j.toString());
        }
        List<Long> expected = jobs.stream().map(j -> j.finished().seqno()).toList();
        assertEquals(expected, signalOrder, "cancelled in queue order");
        assertEquals(List.of(onRing), mock.runOrder);
        awaitFreed(mock, queued + 1);
    }

    /** sched_main.c {@code drm_sched_fini}: teardown cancels the queued and the running jobs with ECANCELED. */
    @Test
    void finiCancelsEverythingWithEcanceled() {
        MockBackend mock = new MockBackend(false);
        Scheduler s = scheduler(mock, 2, LONG_TIMEOUT);
        SchedEntity a = SchedEntity.create(s, SchedPriority.NORMAL);
        SchedEntity b = SchedEntity.create(s, SchedPriority.HIGH);
        List<SchedJob> jobs = new ArrayList<>();
        // b's jobs first: the worker may start a job the moment it is pushed, so a's pushed between b's could take
        // a ring slot; this way the ring's two credits go to b0 and b1 and everything else stays queued
        for (int i = 0; i < 4; i++) {
            jobs.add(submit(b, 1, i));
        }
        for (int i = 0; i < 4; i++) {
            jobs.add(submit(a, 1, i));
        }
        await(jobs.get(0).scheduled());
        await(jobs.get(1).scheduled());
        assertEquals(2, mock.onRing());
        s.fini();
        assertFalse(s.isWorkerAlive());
        for (SchedJob j : jobs) {
            assertTrue(j.scheduled().isSignaled() && j.finished().isSignaled(), j + " not signalled");
            assertEquals(Optional.of(Errno.ECANCELED), j.finished().error(), j.toString());
        }
        assertEquals(2, mock.cancels.get());
        assertEquals(8, mock.freed.size());
        assertEquals(Errno.ECANCELED, assertThrows(ErrnoException.class,
                () -> SchedEntity.create(s, SchedPriority.LOW)).errno());
    }

    /**
     * tests_basic.c {@code drm_sched_basic_timeout}, sched_main.c {@code drm_sched_job_timedout}: a hung job times
     * out, the backend resets (stop, start), the hung job carries ETIME, and the job queued behind it then runs.
     * Only the hung job waits for the timer: every other job completes as it runs.
     */
    @Test
    void timeoutLeadsToResetAndTheNextJobRuns() {
        MockBackend mock = new MockBackend(true);
        Scheduler s = scheduler(mock, 1, Duration.ofMillis(100));
        SchedEntity e = SchedEntity.create(s, SchedPriority.NORMAL);
        SchedJob hung = submit(e, 1, MockBackend.HANG);
        SchedJob next = submit(e, 1, null);
        await(hung.finished());
        assertEquals(Optional.of(Errno.ETIME), hung.finished().error());
        assertEquals(1, mock.resets.get());
        await(next.finished());
        assertEquals(Optional.empty(), next.finished().error());
        assertEquals(List.of(hung, next), mock.runOrder);
        assertFalse(tracer.select(ev -> ev.kind() == TraceKind.SCHED && ev.detail().startsWith("timeout")).isEmpty());
    }

    /** sched_main.c run queues: KERNEL before HIGH before NORMAL before LOW, FIFO within an entity. */
    @Test
    void higherPriorityRunsFirst() {
        MockBackend mock = new MockBackend(true);
        Scheduler s = scheduler(mock, 1, LONG_TIMEOUT);
        s.stop(null);
        List<SchedJob> expected = new ArrayList<>();
        List<SchedJob> all = new ArrayList<>();
        SchedPriority[] order = {SchedPriority.LOW, SchedPriority.NORMAL, SchedPriority.HIGH, SchedPriority.KERNEL};
        List<List<SchedJob>> byPriority = new ArrayList<>();
        for (SchedPriority p : order) {
            SchedEntity e = SchedEntity.create(s, p);
            List<SchedJob> js = List.of(submit(e, 1, p), submit(e, 1, p));
            byPriority.add(js);
            all.addAll(js);
        }
        for (int i = order.length - 1; i >= 0; i--) {
            expected.addAll(byPriority.get(i));
        }
        s.start();
        for (SchedJob j : all) {
            await(j.finished());
        }
        assertEquals(expected, mock.runOrder);
    }

    /** sched_main.c {@code drm_sched_can_queue}: a job waits until the ring has its credits free. */
    @Test
    void jobWaitsForRingCredits() {
        MockBackend mock = new MockBackend(false);
        Scheduler s = scheduler(mock, 2, LONG_TIMEOUT);
        SchedEntity e = SchedEntity.create(s, SchedPriority.NORMAL);
        SchedJob one = submit(e, 1, null);
        SchedJob two = submit(e, 1, null);
        SchedJob big = submit(e, 2, null);
        await(two.scheduled());
        assertEquals(2, s.creditCount());
        assertFalse(big.scheduled().isSignaled());
        assertTrue(mock.completeNext());
        await(one.finished());
        assertFalse(big.scheduled().isSignaled(), "2 credits needed, 1 free");
        assertTrue(mock.completeNext());
        await(big.scheduled());
        assertEquals(2, s.creditCount());
        assertTrue(mock.completeNext());
        await(big.finished());
        assertEquals(0, s.creditCount(), "credits return before the finished fence signals");
    }

    /**
     * sched_main.c {@code drm_sched_job_add_implicit_dependencies}: a reader waits for the reservation's KERNEL and
     * WRITE fences, a writer for the READ ones too.
     */
    @Test
    void implicitDependenciesFromAReservation() {
        MockBackend mock = new MockBackend(true);
        Scheduler s = scheduler(mock, 4, LONG_TIMEOUT);
        SchedEntity e1 = SchedEntity.create(s, SchedPriority.NORMAL);
        SchedEntity e2 = SchedEntity.create(s, SchedPriority.NORMAL);
        FenceContext other = FenceContext.allocate("test", "writer");
        FenceContext readers = FenceContext.allocate("test", "reader");
        Fence write = other.createFence();
        Fence read = readers.createFence();
        Reservation resv = new Reservation("bo");
        resv.lock();
        resv.reserveFences(2);
        resv.addFence(write, ResvUsage.WRITE);
        resv.addFence(read, ResvUsage.READ);
        resv.unlock();

        SchedJob reader = SchedJob.init(e1, 1, null);
        reader.addImplicitDependencies(resv, false);
        SchedJob writer = SchedJob.init(e2, 1, null);
        writer.addImplicitDependencies(resv, true);
        assertEquals(List.of(write), reader.dependencies());
        assertEquals(List.of(write, read), writer.dependencies());
        reader.arm();
        reader.push();
        writer.arm();
        writer.push();
        assertFalse(reader.scheduled().isSignaled());
        write.signal();
        await(reader.finished());
        assertFalse(writer.scheduled().isSignaled(), "writer ran before the reader fence signalled");
        read.signal();
        await(writer.finished());
    }

    /** sched_main.c {@code drm_sched_job_init} and {@code drm_sched_init}: bad arguments are EINVAL. */
    @Test
    void badArgumentsAreEinval() {
        MockBackend mock = new MockBackend(true);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> Scheduler.create(new SchedulerConfig("x", 0, LONG_TIMEOUT), mock, null)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> Scheduler.create(new SchedulerConfig("x", 1, Duration.ZERO), mock, null)).errno());
        Scheduler s = scheduler(mock, 1, LONG_TIMEOUT);
        SchedEntity e = SchedEntity.create(s, SchedPriority.NORMAL);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> SchedJob.init(e, 0, null)).errno());
        SchedJob j = SchedJob.init(e, 1, null);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, j::push).errno());
        j.arm();
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, j::arm).errno());
        j.push();
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, j::push).errno());
        await(j.finished());
    }

    /**
     * sched_main.c {@code drm_sched_resubmit_jobs} and {@code drm_sched_start}: a reset that resubmits runs the
     * innocent job in flight again (it completes without error); the guilty one is not rerun and carries ETIME.
     * The reset is started by {@code drm_sched_fault} once both jobs hold their ring slots: with a short timeout
     * instead, a worker that ran the hung job more than a timeout before the innocent one was pushed reset the ring
     * with the hung job alone, and the innocent one, never completed by the mock, timed out guilty in turn.
     */
    @Test
    void resetResubmitsTheInnocentJob() {
        MockBackend mock = new MockBackend(false);
        mock.resubmitOnReset = true;
        Scheduler s = scheduler(mock, 2, LONG_TIMEOUT);
        SchedEntity hangs = SchedEntity.create(s, SchedPriority.NORMAL);
        SchedEntity innocent = SchedEntity.create(s, SchedPriority.NORMAL);
        SchedJob bad = submit(hangs, 1, MockBackend.HANG);
        SchedJob good = submit(innocent, 1, null);
        await(good.scheduled());
        assertEquals(2, mock.onRing());
        s.fault();
        await(bad.finished());
        await(good.finished());
        assertEquals(Optional.of(Errno.ETIME), bad.finished().error());
        assertEquals(Optional.empty(), good.finished().error());
        assertEquals(List.of(bad, good, good), mock.runOrder);
        assertEquals(1, mock.resets.get());
        awaitFreed(mock, 2);
        assertEquals(0, s.creditCount());
    }

    /** sched_main.c {@code drm_sched_run_job_work}: an {@code ERR_PTR} from run_job ends the job with that errno. */
    @Test
    void runJobFailureEndsTheJobWithItsErrno() {
        MockBackend mock = new MockBackend(true);
        Scheduler s = scheduler(mock, 1, LONG_TIMEOUT);
        SchedEntity e = SchedEntity.create(s, SchedPriority.NORMAL);
        SchedJob refused = submit(e, 1, MockBackend.REFUSE);
        SchedJob next = submit(e, 1, null);
        await(next.finished());
        assertEquals(Optional.of(Errno.EFAULT), refused.finished().error());
        assertTrue(refused.scheduled().isSignaled());
        assertEquals(Optional.empty(), next.finished().error());
        awaitFreed(mock, 2);
        assertEquals(0, s.creditCount());
    }

    /**
     * sched_main.c {@code drm_sched_fini} frees every job: a job whose hardware fence signals while fini runs is
     * completed by the signalling thread, which is held (a callback on the finished fence waits on a latch) between
     * taking the job and queueing it for free_job; fini must wait for it rather than return with the job never freed.
     */
    @Test
    void finiWaitsForACompletionInFlight() throws Exception {
        MockBackend mock = new MockBackend(false);
        Scheduler s = scheduler(mock, 1, LONG_TIMEOUT);
        SchedEntity e = SchedEntity.create(s, SchedPriority.NORMAL);
        SchedJob job = submit(e, 1, null);
        await(job.scheduled());
        CountDownLatch release = new CountDownLatch(1);
        job.finished().addCallback(f -> {
            try {
                assertTrue(release.await(WAIT.toSeconds(), TimeUnit.SECONDS));
            } catch (InterruptedException ex) {
                Thread.currentThread().interrupt();
            }
        });
        Blocked.Call<Void> irq = Blocked.run("hw-irq", mock::completeNext);
        Blocked.Call<Void> fini = null;
        try {
            irq.awaitBlockedIn("java.util.concurrent.CountDownLatch.await");
            fini = Blocked.run("fini", s::fini);
            fini.awaitBlockedIn(Blocked.CONDITION_AWAIT_NANOS, "dev.dmaplane.accel.sched.Scheduler.fini");
        } finally {
            release.countDown();
        }
        fini.get();
        irq.get();
        assertTrue(mock.freed.contains(job), "job completed during fini was never freed");
    }
}
