package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.hw.RegisterBlock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.concurrent.locks.ReentrantLock;
import java.util.function.LongSupplier;

import static dev.dmaplane.vfio.nvme.NvmeRegs.*;

/**
 * The controller's registers in BAR0 (NVM Express Base Specification 2.0, 3.1.4; QEMU's {@code nvme_mmio_read} and
 * {@code nvme_write_bar}) and the transitions CC drives: enable (QEMU's {@code nvme_start_ctrl}), disable, which is
 * a Controller Reset (3.7.2), and shutdown (3.6.2). CC fields other than EN and SHN, and AQA, ASQ and ACQ, are taken
 * only while the controller is disabled. Guarded by the controller's lock.
 */
final class ControllerRegisters {
    private static final Logger LOG = LoggerFactory.getLogger(ControllerRegisters.class);
    /** CAP.TO: 7.5 seconds. */
    private static final int TIMEOUT_UNITS = 15;
    /** CAP.MPSMAX: 64 KiB pages. */
    private static final int MPS_MAX = 4;

    private final Controller ctrl;
    private final ReentrantLock lock;
    final long cap;
    private int cc;
    private int csts;
    private int aqa;
    private long asq;
    private long acq;

    /** @param cmb whether the controller offers a controller memory buffer (CAP.CMBS) */
    ControllerRegisters(Controller ctrl, NvmeConfig cfg, boolean cmb) {
        this.ctrl = ctrl;
        this.lock = ctrl.lock;
        this.cap = (cfg.maxEntries() - 1L) | 1L << 16 | (long) TIMEOUT_UNITS << 24 | (long) cfg.dstrd() << 32
                | (long) CSS_NVM << 37 | (long) MPS_MAX << 52 | (cmb ? 1L << 57 : 0);
    }

    /**
     * BAR0: the registers at 0, with INTMS and INTMC of {@code completions} and the buffer's registers of
     * {@code cmb} (null for none), then a tail and a head doorbell for each queue up to {@code ioQueues}.
     */
    RegisterBlock build(String name, Completions completions, Cmb cmb, Doorbells doorbells, int ioQueues, int dstrd) {
        RegisterBlock.Builder b = RegisterBlock.builder(name + " BAR0")
                .constant("CAP", CAP, 8, cap)
                .constant("VS", VS, 4, VS_2_0)
                .register("INTMS", INTMS, 4, completions::intMask, completions::maskSet)
                .register("INTMC", INTMC, 4, completions::intMask, completions::maskClear)
                .register("CC", CC, 4, () -> locked(() -> cc), this::writeCc)
                .readOnly("CSTS", CSTS, 4, () -> locked(() -> csts))
                .register("AQA", AQA, 4, () -> locked(() -> aqa), v -> whileDisabled(() -> aqa = (int) v & 0x0fff_0fff))
                .register("ASQ", ASQ, 8, () -> locked(() -> asq), v -> whileDisabled(() -> asq = v & ~0xfffL))
                .register("ACQ", ACQ, 8, () -> locked(() -> acq), v -> whileDisabled(() -> acq = v & ~0xfffL))
                .readOnly("CMBLOC", CMBLOC, 4, () -> cmb == null ? 0 : locked(cmb::cmbloc))
                .readOnly("CMBSZ", CMBSZ, 4, () -> cmb == null ? 0 : locked(cmb::cmbsz));
        if (cmb != null) {
            b.register("CMBMSC", CMBMSC, 8, () -> locked(cmb::msc), v -> {
                lock.lock();
                try {
                    cmb.msc(v);
                } finally {
                    lock.unlock();
                }
            });
        }
        for (int q = 0; q <= ioQueues; q++) {
            int qid = q;
            b.doorbell("SQ" + q + "TDBL", sqTailDoorbell(q, dstrd), 4, v -> doorbells.sqTail(qid, (int) v));
            b.doorbell("CQ" + q + "HDBL", cqHeadDoorbell(q, dstrd), 4, v -> doorbells.cqHead(qid, (int) v));
        }
        return b.build();
    }

    private long locked(LongSupplier read) {
        lock.lock();
        try {
            return read.getAsLong();
        } finally {
            lock.unlock();
        }
    }

    private void whileDisabled(Runnable write) {
        lock.lock();
        try {
            if ((cc & CC_EN) == 0) {
                write.run(); // the admin queue registers are taken only while the controller is disabled
            }
        } finally {
            lock.unlock();
        }
    }

    /**
     * CC: EN 0 to 1 enables after checking the admin queue setup, EN 1 to 0 resets the controller, SHN shuts it
     * down; the other fields are taken only while disabled (QEMU's {@code nvme_write_bar}).
     */
    private void writeCc(long value) {
        int v = (int) value;
        lock.lock();
        try {
            boolean was = (cc & CC_EN) != 0;
            boolean now = (v & CC_EN) != 0;
            int shn = v >>> CC_SHN_SHIFT & 3;
            int oldShn = cc >>> CC_SHN_SHIFT & 3;
            cc = was && now ? cc & ~(3 << CC_SHN_SHIFT) | shn << CC_SHN_SHIFT : v & 0x00ff_fff1;
            if (!was && now) {
                enable();
            } else if (was && !now) {
                ctrl.controllerReset();
                csts &= CSTS_SHST_MASK;
            }
            if (shn != CC_SHN_NONE && oldShn == CC_SHN_NONE) {
                shutdown();
            } else if (shn == CC_SHN_NONE && oldShn != CC_SHN_NONE) {
                csts &= ~CSTS_SHST_MASK;
            }
        } finally {
            lock.unlock();
        }
    }

    /**
     * CC.EN set: the admin queues come from AQA, ASQ and ACQ. A setup the controller cannot run (a zero or
     * one-entry admin queue, a zero base, a page size outside CAP.MPSMIN..MPSMAX, a command set or arbitration
     * mechanism not offered, entry sizes other than 64 and 16 bytes) leaves CSTS.RDY clear and sets CSTS.CFS, as
     * QEMU's {@code nvme_start_ctrl} failing does; the host must disable the controller to clear it.
     */
    private void enable() {
        String bad = adminSetupProblem();
        if (bad != null) {
            csts = csts & CSTS_SHST_MASK | CSTS_CFS;
            LOG.warn("{}: enable refused, controller fatal status: {}", ctrl.name, bad);
            return;
        }
        Queues.Cq cq = new Queues.Cq(0, acq, (aqa >>> 16 & 0xfff) + 1, 0, true);
        ctrl.cqs[0] = cq;
        ctrl.sqs[0] = new Queues.Sq(0, asq, (aqa & 0xfff) + 1, cq);
        cq.sqs = 1;
        csts = csts & CSTS_SHST_MASK | CSTS_RDY;
        ctrl.wakeAll();
    }

    private String adminSetupProblem() {
        int mps = cc >>> CC_MPS_SHIFT & 0xf;
        if ((aqa & 0xfff) == 0 || (aqa >>> 16 & 0xfff) == 0) {
            return String.format("AQA %#x: an admin queue needs at least 2 entries", aqa);
        }
        if (asq == 0 || acq == 0) {
            return String.format("ASQ %#x / ACQ %#x: no admin queue base", asq, acq);
        }
        if (mps < capMpsMin(cap) || mps > capMpsMax(cap)) {
            return "CC.MPS " + mps + " outside CAP.MPSMIN..MPSMAX " + capMpsMin(cap) + ".." + capMpsMax(cap);
        }
        if ((asq & (pageSize() - 1)) != 0 || (acq & (pageSize() - 1)) != 0) {
            return String.format("ASQ %#x / ACQ %#x not aligned to the %d-byte memory page", asq, acq, pageSize());
        }
        if ((cc >>> CC_CSS_SHIFT & 7) != 0) {
            return "CC.CSS " + (cc >>> CC_CSS_SHIFT & 7) + ": only the NVM command set (0) is offered";
        }
        if ((cc >>> CC_AMS_SHIFT & 7) != 0) {
            return "CC.AMS " + (cc >>> CC_AMS_SHIFT & 7) + ": only round robin (0) is offered";
        }
        if ((cc >>> CC_IOSQES_SHIFT & 0xf) != 6 || (cc >>> CC_IOCQES_SHIFT & 0xf) != 4) {
            return "CC.IOSQES " + (cc >>> CC_IOSQES_SHIFT & 0xf) + " / IOCQES " + (cc >>> CC_IOCQES_SHIFT & 0xf)
                    + ": entries are 2^6 and 2^4 bytes";
        }
        return null;
    }

    /** CC.SHN: completed writes are made durable, then CSTS.SHST reads shutdown complete (Base 2.0, 3.6.2). */
    private void shutdown() {
        try {
            ctrl.media.flush();
        } catch (RuntimeException e) {
            LOG.error("{}: flush on shutdown failed", ctrl.name, e);
        }
        csts = csts & ~CSTS_SHST_MASK | CSTS_SHST_COMPLETE << CSTS_SHST_SHIFT;
    }

    /** The memory page size CC.MPS selects. */
    long pageSize() {
        return 4096L << (cc >>> CC_MPS_SHIFT & 0xf);
    }

    /** CSTS.RDY without CFS: the controller processes commands. */
    boolean ready() {
        return (csts & (CSTS_RDY | CSTS_CFS)) == CSTS_RDY;
    }

    /** A queue in host memory the controller cannot reach: CSTS.CFS, as QEMU's {@code nvme_post_cqes} does. */
    void fatal(String why) {
        csts |= CSTS_CFS;
        LOG.warn("{}: controller fatal status: {}", ctrl.name, why);
    }

    /** CSTS.CFS, for an engine that failed where no queue is to blame; under the lock. */
    void setFatalStatus() {
        csts |= CSTS_CFS;
    }

    /** A Controller Reset clears CSTS.RDY and CFS; under the lock. */
    void resetStatus() {
        csts &= ~(CSTS_RDY | CSTS_CFS);
    }

    /** Power-on values of CC, CSTS and the admin queue registers; under the lock. */
    void powerOn() {
        cc = 0;
        csts = 0;
        aqa = 0;
        asq = 0;
        acq = 0;
    }
}
