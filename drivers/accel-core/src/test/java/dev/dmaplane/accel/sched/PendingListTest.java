package dev.dmaplane.accel.sched;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The pending list of {@code drivers/gpu/drm/scheduler/sched_main.c} with its credits and job timer:
 * {@code drm_sched_can_queue} clamps a job's credits to the ring, {@code drm_sched_job_begin} starts the timer only
 * when idle, the oldest job leaving restarts it for the next ({@code drm_sched_get_finished_job}), and
 * {@code drm_sched_job_timedout} blames the oldest unfinished job. Times are explicit nanoTime values.
 */
class PendingListTest {
    private static final long TIMEOUT = 1_000;

    private final Scheduler scheduler = Scheduler.create(new SchedulerConfig("pending", 4, Duration.ofSeconds(60)),
            new MockBackend(true), null);
    private final SchedEntity entity = new SchedEntity(scheduler, SchedPriority.NORMAL, "pending.e");

    @AfterEach
    void fini() {
        scheduler.fini();
        assertFalse(scheduler.isWorkerAlive());
    }

    private SchedJob job(int credits) {
        return SchedJob.init(entity, credits, null);
    }

    @Test
    void creditsAreClampedToTheRingAndTakenOnce() {
        PendingList pending = new PendingList(4, TIMEOUT);
        SchedJob three = job(3);
        SchedJob two = job(2);
        SchedJob huge = job(9);
        assertTrue(pending.canQueue(huge), "more than the ring asks the whole ring, not more");
        pending.begin(three, 0);
        assertEquals(3, pending.creditCount());
        assertFalse(pending.canQueue(two));
        assertFalse(pending.canQueue(huge));
        pending.takeCredits(three);
        assertEquals(3, pending.creditCount(), "a job holding its credits takes none again");
        pending.releaseCredits(three);
        pending.releaseCredits(three);
        assertEquals(0, pending.creditCount(), "given back once");
        pending.begin(huge, 0);
        assertEquals(4, pending.creditCount());
        assertEquals(List.of(three, huge), pending.jobs());
    }

    @Test
    void theTimerRunsForTheOldestUnfinishedJob() {
        PendingList pending = new PendingList(4, TIMEOUT);
        SchedJob first = job(1);
        SchedJob second = job(1);
        assertEquals(Long.MAX_VALUE, pending.deadline());
        assertFalse(pending.fireTimer(5), "no job on the hardware: a fault fires nothing");

        pending.begin(first, 100);
        assertEquals(100 + TIMEOUT, pending.deadline());
        pending.begin(second, 400);
        assertEquals(100 + TIMEOUT, pending.deadline(), "armed already: the second job does not restart it");

        pending.remove(second, true, 500);
        assertEquals(100 + TIMEOUT, pending.deadline(), "not the oldest: the timer runs on");
        pending.begin(second, 600);
        assertTrue(first.claim());
        pending.remove(first, true, 700);
        assertEquals(700 + TIMEOUT, pending.deadline(), "the oldest left: counted again for the next");

        assertNull(pending.expired(700 + TIMEOUT - 1));
        assertSame(second, pending.expired(700 + TIMEOUT));
        assertEquals(Long.MAX_VALUE, pending.deadline(), "fired: stopped until armed again");

        pending.armTimer(800);
        assertTrue(pending.fireTimer(900));
        assertTrue(second.claim());
        assertNull(pending.expired(900), "fired with every job finished: none to blame");
        pending.armTimer(1000);
        assertEquals(Long.MAX_VALUE, pending.deadline(), "no unfinished job: nothing to time");
        pending.remove(second, false, 1100);
        assertTrue(pending.isEmpty());
    }
}
