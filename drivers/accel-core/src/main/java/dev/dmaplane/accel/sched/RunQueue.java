package dev.dmaplane.accel.sched;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.function.Predicate;

/**
 * A {@code struct drm_sched_rq} ({@code drivers/gpu/drm/scheduler/sched_main.c}): the entities of one
 * {@link SchedPriority} on one scheduler, served by {@code drm_sched_rq_select_entity_fifo}: the entity whose next
 * job is ready and was pushed first. Guarded by the scheduler's lock.
 */
final class RunQueue {
    private final List<SchedEntity> entities = new ArrayList<>();

    /** {@code drm_sched_rq_add_entity}. */
    void add(SchedEntity entity) {
        entities.add(entity);
    }

    /** {@code drm_sched_rq_remove_entity}. */
    void remove(SchedEntity entity) {
        entities.remove(entity);
    }

    /** Adds every entity of this queue to {@code to}. */
    void addAllTo(Collection<? super SchedEntity> to) {
        to.addAll(entities);
    }

    /**
     * The entity whose first queued job passes {@code ready} and has the lowest submit order, or null. {@code ready}
     * is asked once for each entity's first job, in the order the entities were added.
     */
    SchedEntity selectFifo(Predicate<SchedJob> ready) {
        SchedEntity best = null;
        for (SchedEntity e : entities) {
            SchedJob head = e.queue.peekFirst();
            if (head != null && ready.test(head)
                    && (best == null || head.submitOrder < best.queue.peekFirst().submitOrder)) {
                best = e;
            }
        }
        return best;
    }
}
