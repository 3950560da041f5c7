package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.vfio.nvme.NvmeAdmin;

import java.util.concurrent.locks.ReentrantLock;

/**
 * The submission queue tail and completion queue head doorbells (QEMU's {@code nvme_process_db}): a doorbell is a
 * register store that records the new tail or head under the controller's lock and wakes the engine that serves the
 * queue, never waiting for a command. A write to a queue that does not exist, or past its entries, is ignored and
 * raises an error event (Base 2.0, 5.2: Invalid Doorbell Register, Invalid Doorbell Write Value).
 */
final class Doorbells {
    private final Controller ctrl;
    private final ReentrantLock lock;
    private final Queues.Sq[] sqs;
    private final Queues.Cq[] cqs;
    private final CommandEngine[] engines;
    private final ControllerRegisters regs;

    /** @param engines the controller's engines: SQ {@code y}'s is {@code y} modulo their count */
    Doorbells(Controller ctrl, CommandEngine[] engines) {
        this.ctrl = ctrl;
        this.lock = ctrl.lock;
        this.sqs = ctrl.sqs;
        this.cqs = ctrl.cqs;
        this.engines = engines;
        this.regs = ctrl.regs;
    }

    /** SQyTDBL: a tail past the queue or on a queue that does not exist is ignored and raises an error event. */
    void sqTail(int qid, int value) {
        lock.lock();
        try {
            if (!regs.ready()) {
                return;
            }
            Queues.Sq sq = sqs[qid];
            if (sq == null) {
                ctrl.asyncEvents.error(NvmeAdmin.AE_INFO_INVALID_DOORBELL,
                        "SQ" + qid + " tail doorbell " + value + ": no such queue");
            } else if (Integer.toUnsignedLong(value) >= sq.entries) {
                ctrl.asyncEvents.error(NvmeAdmin.AE_INFO_INVALID_DOORBELL_VALUE, "SQ" + qid + " tail " + value
                        + " past its " + sq.entries + " entries");
            } else {
                sq.tail = value;
                engines[qid % engines.length].wake();
            }
        } finally {
            lock.unlock();
        }
    }

    /** CQyHDBL: the host consumed entries up to {@code value}; room in a full queue lets commands run again. */
    void cqHead(int qid, int value) {
        lock.lock();
        try {
            if (!regs.ready()) {
                return;
            }
            Queues.Cq cq = cqs[qid];
            if (cq == null) {
                ctrl.asyncEvents.error(NvmeAdmin.AE_INFO_INVALID_DOORBELL,
                        "CQ" + qid + " head doorbell " + value + ": no such queue");
            } else if (Integer.toUnsignedLong(value) >= cq.entries) {
                ctrl.asyncEvents.error(NvmeAdmin.AE_INFO_INVALID_DOORBELL_VALUE, "CQ" + qid + " head " + value
                        + " past its " + cq.entries + " entries");
            } else {
                cq.head = value;
                if (cq.stalled) {
                    cq.stalled = false;
                    ctrl.wakeAll();
                }
                if (qid == 0) {
                    ctrl.asyncEvents.complete();
                }
            }
        } finally {
            lock.unlock();
        }
    }
}
