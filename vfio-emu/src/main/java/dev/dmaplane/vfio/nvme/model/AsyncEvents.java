package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.vfio.nvme.NvmeAdmin;
import dev.dmaplane.vfio.nvme.NvmeStatus;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayDeque;
import java.util.Deque;

/**
 * Asynchronous events (NVM Express Base Specification 2.0, 5.2 Asynchronous Event Request; QEMU's
 * {@code nvme_enqueue_event} and {@code nvme_process_aers}): the requests the host left outstanding on the admin
 * queue and the events waiting for one, each event completing the oldest request while the admin CQ has room.
 * Guarded by the controller's lock.
 */
final class AsyncEvents {
    private static final Logger LOG = LoggerFactory.getLogger(AsyncEvents.class);

    private final Controller ctrl;
    /** Command identifiers of the outstanding Asynchronous Event Requests, oldest first. */
    private final Deque<Integer> requests = new ArrayDeque<>();
    /** Completion DW0s of the events no request took yet, oldest first. */
    private final Deque<Integer> pending = new ArrayDeque<>();

    AsyncEvents(Controller ctrl) {
        this.ctrl = ctrl;
    }

    /**
     * Holds Asynchronous Event Request {@code cid} until an event comes; false, holding nothing, when
     * {@link Controller#AERL} + 1 are outstanding already.
     */
    boolean hold(int cid) {
        if (requests.size() > Controller.AERL) {
            return false;
        }
        requests.add(cid);
        return true;
    }

    /** An error event for a bad doorbell write (Base 2.0, 5.2: Error status, the Error Information log page). */
    void error(int info, String why) {
        LOG.warn("{}: {}", ctrl.name, why);
        event(NvmeAdmin.AE_TYPE_ERROR | info << 8 | NvmeAdmin.LOG_ERROR << 16);
    }

    /** An asynchronous event: completes an outstanding Asynchronous Event Request, or waits for one. */
    void event(int dw0) {
        pending.add(dw0);
        complete();
    }

    /** Completes requests with the waiting events while both are there and the admin CQ has room. */
    void complete() {
        Queues.Sq asq0 = ctrl.sqs[0];
        while (asq0 != null && ctrl.regs.ready() && !requests.isEmpty() && !pending.isEmpty() && !asq0.cq.full()) {
            int cid = requests.poll();
            asq0.outstanding.remove(cid);
            ctrl.completions.post(asq0, cid, new Result(NvmeStatus.SUCCESS, pending.poll()));
        }
    }

    /** A controller reset drops the requests without completions and forgets the events. */
    void clear() {
        requests.clear();
        pending.clear();
    }
}
