package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.hw.DmaStatus;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.pci.Msi;
import dev.dmaplane.pci.Msix;
import dev.dmaplane.vfio.nvme.NvmeCompletion;
import dev.dmaplane.vfio.nvme.NvmeStatus;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Completion queue entries posted and their interrupt vectors signalled (QEMU's {@code nvme_post_cqes},
 * {@code nvme_irq_assert} and {@code nvme_irq_check}), with the INTMS and INTMC registers that mask pin-based and
 * MSI vectors (NVM Express Base Specification 2.0, 3.1.4.3). Guarded by the controller's lock.
 */
final class Completions {
    private static final Logger LOG = LoggerFactory.getLogger(Completions.class);

    private final Controller ctrl;
    private final ModelContext ctx;
    private final ReentrantLock lock;
    private final DeviceBus bus;
    /** The completion entry being posted; guarded by the lock. */
    private final MemorySegment cqe = MemorySegment.ofArray(new byte[NvmeCompletion.SIZE]);
    private int intMask;
    private int intPending;

    Completions(Controller ctrl) {
        this.ctrl = ctrl;
        this.ctx = ctrl.ctx;
        this.lock = ctrl.lock;
        this.bus = ctrl.bus;
    }

    /** Posts a completion for command {@code cid} of {@code sq} and signals its vector. */
    void post(Queues.Sq sq, int cid, Result r) {
        post(sq, cid, r.status(), r.dw0());
    }

    void post(Queues.Sq sq, int cid, int code, int dw0) {
        Queues.Cq cq = sq.cq;
        int status = code == NvmeStatus.SUCCESS ? 0 : code | NvmeStatus.DNR;
        new NvmeCompletion(dw0, 0, sq.head, sq.qid, cid, cq.phase, status).writeTo(cqe);
        DmaStatus written = bus.write(cq.base + (long) cq.tail * NvmeCompletion.SIZE, cqe);
        if (!written.ok()) {
            ctrl.regs.fatal("posting to CQ" + cq.qid + " entry " + cq.tail + ": " + written);
            return;
        }
        cq.advance();
        if (cq.interrupts) {
            interrupt(cq.vector);
        }
    }

    /** INTMS and INTMC read the mask. */
    long intMask() {
        lock.lock();
        try {
            return intMask;
        } finally {
            lock.unlock();
        }
    }

    /** INTMS: masks pin-based and MSI vectors; with MSI-X the table's own mask bits apply (Base 2.0, 3.1.4.3). */
    void maskSet(long bits) {
        lock.lock();
        try {
            intMask |= (int) bits;
        } finally {
            lock.unlock();
        }
    }

    /** INTMC: unmasks, and a vector with a completion posted while it was masked is signalled now. */
    void maskClear(long bits) {
        lock.lock();
        try {
            intMask &= ~(int) bits;
            int due = intPending & (int) bits;
            intPending &= ~due;
            for (int v = 0; due != 0; v++, due >>>= 1) {
                if ((due & 1) != 0) {
                    signal(v);
                }
            }
        } finally {
            lock.unlock();
        }
    }

    /** A controller reset forgets the vectors held while masked; under the lock. */
    void dropPending() {
        intPending = 0;
    }

    /** Power-on: nothing masked; under the lock. */
    void powerOn() {
        intMask = 0;
    }

    /**
     * Signals {@code vector}: through MSI-X when the driver enabled it (its mask and pending bits apply), else as
     * MSI or INTx, held while INTMS masks it.
     */
    private void interrupt(int vector) {
        boolean msix = ctx.function().msix().map(Msix::enabled).orElse(false);
        if (!msix && vector < 32 && (intMask & 1 << vector) != 0) {
            intPending |= 1 << vector;
            return;
        }
        signal(vector);
    }

    private void signal(int vector) {
        try {
            ctx.raise(vector);
        } catch (ErrnoException e) {
            LOG.warn("{}: completion interrupt on vector {} lost: {}", ctrl.name, vector, e.getMessage(), e);
        }
    }

    /** Interrupt vectors a completion queue may name: the MSI-X table size, else the MSI vectors, else one. */
    int vectors() {
        return ctx.function().msix().map(Msix::vectors)
                .orElseGet(() -> ctx.function().msi().map(Msi::vectors).orElse(1));
    }
}
