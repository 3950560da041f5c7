package dev.dmaplane.accel.sched;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;

/**
 * {@code drm_sched_rq_select_entity_fifo} ({@code drivers/gpu/drm/scheduler/sched_main.c}): of the entities whose
 * next job is ready, the one whose job was pushed first; an entity with nothing queued or a job still waiting is
 * passed over.
 */
class RunQueueTest {
    private final Scheduler scheduler = Scheduler.create(new SchedulerConfig("rq", 4, Duration.ofSeconds(60)),
            new MockBackend(true), null);

    @AfterEach
    void fini() {
        scheduler.fini();
        assertFalse(scheduler.isWorkerAlive());
    }

    /** An entity of this run queue's own, unknown to the scheduler's worker, with jobs of these submit orders. */
    private SchedEntity entity(String name, long... submitOrders) {
        SchedEntity e = new SchedEntity(scheduler, SchedPriority.NORMAL, name);
        for (long order : submitOrders) {
            SchedJob job = SchedJob.init(e, 1, name + "#" + order);
            job.submitOrder = order;
            e.queue.addLast(job);
        }
        return e;
    }

    @Test
    void theEntityWhoseReadyJobWasPushedFirstIsSelected() {
        RunQueue rq = new RunQueue();
        SchedEntity idle = entity("idle");
        SchedEntity late = entity("late", 7, 8);
        SchedEntity early = entity("early", 3, 9);
        rq.add(idle);
        rq.add(late);
        rq.add(early);

        assertSame(early, rq.selectFifo(job -> true));
        List<Object> asked = new ArrayList<>();
        assertSame(late, rq.selectFifo(job -> asked.add(job.payload()) && job.entity() != early),
                "early's job waits on a dependency: late's is the oldest ready one");
        assertEquals(List.of("late#7", "early#3"), asked, "each entity's first job asked once, in queue order");
        assertNull(rq.selectFifo(job -> false));

        rq.remove(early);
        assertSame(late, rq.selectFifo(job -> true));
        List<SchedEntity> all = new ArrayList<>();
        rq.addAllTo(all);
        assertEquals(List.of(idle, late), all);
    }
}
