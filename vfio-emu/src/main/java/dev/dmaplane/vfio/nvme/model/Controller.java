package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.hw.DmaStatus;
import dev.dmaplane.hw.ModelContext;
import dev.dmaplane.hw.ModelDevice;
import dev.dmaplane.hw.RegisterBlock;
import dev.dmaplane.pci.PciReset;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeStatus;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.LongSupplier;

import static dev.dmaplane.vfio.nvme.NvmeRegs.*;

/**
 * One NVMe controller (QEMU's {@code NvmeCtrl} in {@code hw/nvme/ctrl.c}): its BAR0 registers and doorbells, the
 * enable, disable and shutdown transitions of CC and CSTS (NVM Express Base Specification 2.0, 3.5), and command
 * engines, as a controller's per-queue engines and QEMU's per-SQ {@code nvme_process_sq}: engine {@code i} of
 * {@link #ENGINES} serves the submission queues whose ID modulo the engine count is {@code i}, round robin, taking
 * up to the Arbitration Burst of commands from a queue at a time (Base 2.0, 3.4.4), so different queues run at the
 * same time.
 * <p>
 * Locking: queue, register and feature state is guarded by {@link #lock}. A doorbell is a register store: it records
 * the tail or head under the lock and wakes the queue's engine, never waiting for a command. An engine takes the
 * lock once to claim a burst of commands (the SQ head moves past them, a completion entry is reserved in the CQ for
 * each) and once to post their completions, in order; fetching the entries, the namespace accesses and the data DMAs
 * run without it. Admin commands run whole
 * under the lock. A controller reset, a Delete I/O SQ and {@link #quiesce} first let the commands in flight finish
 * ({@link #drain}) and no command starts meanwhile.
 * <p>
 * Why one class of over 800 lines: the registers, the doorbells, the engines and the posting of completions all
 * work on the queue state under the one lock (as QEMU's {@code NvmeCtrl}); the commands' bodies live in
 * {@link AdminCommands} and {@link IoCommands}, the queues in {@link Queues}.
 */
final class Controller implements ModelDevice {
    private static final Logger LOG = LoggerFactory.getLogger(Controller.class);
    /** How long {@link #quiesce} waits for the device thread. */
    static final long STOP_TIMEOUT_MS = 10_000;
    /** Identify Controller AERL: four Asynchronous Event Requests outstanding at most. */
    static final int AERL = 3;
    /** Identify Controller ELPE: 64 Error Information entries. */
    static final int ELPE = 63;
    /** CAP.TO: 7.5 seconds. */
    private static final int TIMEOUT_UNITS = 15;
    /** CAP.MPSMAX: 64 KiB pages. */
    private static final int MPS_MAX = 4;
    /** Command engines at most: a small pool, each serving every fourth submission queue. */
    static final int ENGINES = 4;

    final ModelContext ctx;
    final NvmeConfig cfg;
    final Media media;
    final String name;
    final long cap;
    final ReentrantLock lock = new ReentrantLock();
    /** Signalled when the last command in flight completed, for {@link #drain}. */
    private final Condition drained = lock.newCondition();
    private final RegisterBlock registers;
    private final CommandEngine[] engines;
    final AdminCommands admin;
    final Health health = new Health();
    /** The controller memory buffer, or null. */
    private final Cmb cmb;
    final DeviceBus bus;
    final Completions completions;
    final AsyncEvents asyncEvents;

    private int cc;
    private int csts;
    private int aqa;
    private long asq;
    private long acq;
    final Queues.Sq[] sqs;
    final Queues.Cq[] cqs;
    /** I/O queue pairs granted by Set Features Number of Queues. */
    int grantedSqs;
    int grantedCqs;
    /** I/O commands claimed by an engine and not yet completed. */
    int inFlight;
    /** Drains under way: no engine claims a command meanwhile. */
    int draining;
    boolean stopped;

    /** @param cmb the controller memory buffer, or null */
    Controller(ModelContext ctx, NvmeConfig cfg, Media media, Cmb cmb) {
        this.ctx = ctx;
        this.cfg = cfg;
        this.media = media;
        this.cmb = cmb;
        this.bus = new DeviceBus(ctx.dma(), cmb);
        this.name = ctx.function().bdf() + " nvme";
        this.completions = new Completions(this);
        this.cap = (cfg.maxEntries() - 1L) | 1L << 16 | (long) TIMEOUT_UNITS << 24 | (long) cfg.dstrd() << 32
                | (long) CSS_NVM << 37 | (long) MPS_MAX << 52 | (cmb != null ? 1L << 57 : 0);
        this.sqs = new Queues.Sq[cfg.ioQueues() + 1];
        this.cqs = new Queues.Cq[cfg.ioQueues() + 1];
        this.admin = new AdminCommands(this);
        this.asyncEvents = new AsyncEvents(this);
        resetFeatures();
        this.engines = new CommandEngine[Math.min(ENGINES, sqs.length)];
        for (int i = 0; i < engines.length; i++) {
            engines[i] = new CommandEngine(this, i, engines.length);
        }
        Doorbells doorbells = new Doorbells(this, engines);
        RegisterBlock.Builder b = RegisterBlock.builder(name + " BAR0")
                .constant("CAP", CAP, 8, cap)
                .constant("VS", VS, 4, VS_2_0)
                .register("INTMS", INTMS, 4, completions::intMask, completions::maskSet)
                .register("INTMC", INTMC, 4, completions::intMask, completions::maskClear)
                .register("CC", CC, 4, this::cc, this::writeCc)
                .readOnly("CSTS", CSTS, 4, this::csts)
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
        for (int q = 0; q <= cfg.ioQueues(); q++) {
            int qid = q;
            b.doorbell("SQ" + q + "TDBL", sqTailDoorbell(q, cfg.dstrd()), 4, v -> doorbells.sqTail(qid, (int) v));
            b.doorbell("CQ" + q + "HDBL", cqHeadDoorbell(q, cfg.dstrd()), 4, v -> doorbells.cqHead(qid, (int) v));
        }
        this.registers = b.build();
    }

    RegisterBlock registers() {
        return registers;
    }

    /** Starts the engines' threads; after the registers are attached. */
    void start() {
        for (CommandEngine e : engines) {
            e.thread.start();
        }
    }

    /** The engines' threads, for tests that check nothing is left running. */
    List<Thread> threads() {
        return Arrays.stream(engines).map(e -> e.thread).toList();
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

    private long cc() {
        return locked(() -> cc);
    }

    private long csts() {
        return locked(() -> csts);
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
                controllerReset();
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
            LOG.warn("{}: enable refused, controller fatal status: {}", name, bad);
            return;
        }
        Queues.Cq cq = new Queues.Cq(0, acq, (aqa >>> 16 & 0xfff) + 1, 0, true);
        cqs[0] = cq;
        sqs[0] = new Queues.Sq(0, asq, (aqa & 0xfff) + 1, cq);
        cq.sqs = 1;
        csts = csts & CSTS_SHST_MASK | CSTS_RDY;
        wakeAll();
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
            media.flush();
        } catch (RuntimeException e) {
            LOG.error("{}: flush on shutdown failed", name, e);
        }
        csts = csts & ~CSTS_SHST_MASK | CSTS_SHST_COMPLETE << CSTS_SHST_SHIFT;
    }

    /**
     * Controller Reset (Base 2.0, 3.7.2): every queue is deleted, outstanding commands (Asynchronous Event
     * Requests included) are dropped without completions, pending events are forgotten, CSTS.RDY and CFS clear.
     */
    private void controllerReset() {
        drain(null);
        Arrays.fill(sqs, null);
        Arrays.fill(cqs, null);
        asyncEvents.clear();
        completions.dropPending();
        for (CommandEngine e : engines) {
            e.cursor = 0;
        }
        csts &= ~(CSTS_RDY | CSTS_CFS);
        resetFeatures();
    }

    private void resetFeatures() {
        grantedSqs = cfg.ioQueues();
        grantedCqs = cfg.ioQueues();
        admin.resetFeatures();
    }

    /** The memory page size CC.MPS selects. */
    long pageSize() {
        return 4096L << (cc >>> CC_MPS_SHIFT & 0xf);
    }

    boolean ready() {
        return (csts & (CSTS_RDY | CSTS_CFS)) == CSTS_RDY;
    }

    void wakeAll() {
        for (CommandEngine e : engines) {
            e.wake();
        }
    }

    /**
     * Waits, with the lock held, until no I/O command of {@code sq} (of any queue when null) is in flight; no
     * engine claims a command meanwhile. Bounded by {@link #STOP_TIMEOUT_MS}, as a command cannot block.
     */
    void drain(Queues.Sq sq) {
        draining++;
        try {
            long left = TimeUnit.MILLISECONDS.toNanos(STOP_TIMEOUT_MS);
            while (sq == null ? inFlight > 0 : sq.inFlight) {
                if (left <= 0) {
                    LOG.error("{}: {} command(s) still in flight after {} ms", name, inFlight, STOP_TIMEOUT_MS);
                    return;
                }
                left = drained.awaitNanos(left);
            }
        } catch (InterruptedException e) {
            LOG.error("{}: interrupted waiting for the commands in flight", name, e);
            Thread.currentThread().interrupt();
        } finally {
            draining--;
            wakeAll();
        }
    }

    /** An engine finished {@code claimed} commands, under the lock: a drain waiting for them may go on. */
    void completed(int claimed) {
        inFlight -= claimed;
        if (inFlight == 0 || draining > 0) {
            drained.signalAll();
        }
    }

    /** Fetches the admin command at the head of {@code sq} into {@code sqe}, runs it and posts its completion. */
    void takeAdmin(Queues.Sq sq, MemorySegment sqe) {
        DmaStatus fetched = bus.read(sq.base + (long) sq.head * NvmeCommand.SIZE, sqe);
        if (!fetched.ok()) {
            fatal("fetching SQ" + sq.qid + " entry " + sq.head + ": " + fetched);
            return;
        }
        sq.head = (sq.head + 1) % sq.entries;
        NvmeCommand c = NvmeCommand.readFrom(sqe);
        Result r;
        if (sq.outstanding.contains(c.cid())) {
            r = Result.of(NvmeStatus.COMMAND_ID_CONFLICT);
        } else {
            try {
                r = admin.execute(c, sq);
            } catch (RuntimeException e) {
                LOG.error("{}: SQ{} command {} (opcode {}) failed", name, sq.qid, c.cid(), c.opcode(), e);
                r = Result.of(NvmeStatus.INTERNAL_ERROR);
            }
        }
        if (r.deferred()) {
            asyncEvents.complete();
            return;
        }
        if (r.status() != NvmeStatus.SUCCESS) {
            health.error(sq.qid, c, r.status());
        }
        completions.post(sq, c.cid(), r);
    }

    /** A queue in host memory the controller cannot reach: CSTS.CFS, as QEMU's {@code nvme_post_cqes} does. */
    void fatal(String why) {
        csts |= CSTS_CFS;
        LOG.warn("{}: controller fatal status: {}", name, why);
    }

    /** CSTS.CFS, for an engine that failed where no queue is to blame; under the lock. */
    void setFatalStatus() {
        csts |= CSTS_CFS;
    }

    /** Moves {@code data} to the host memory the command's PRPs describe, walked with {@code prp}. */
    int toHost(Prp prp, NvmeCommand c, MemorySegment data) {
        int st = prp.walk(c.prp1(), c.prp2(), data.byteSize(), pageSize());
        return st != NvmeStatus.SUCCESS ? st : transferred(prp.move(0, data, true), c);
    }

    /** Fills {@code data} from the host memory the command's PRPs describe, walked with {@code prp}. */
    int fromHost(Prp prp, NvmeCommand c, MemorySegment data) {
        int st = prp.walk(c.prp1(), c.prp2(), data.byteSize(), pageSize());
        return st != NvmeStatus.SUCCESS ? st : transferred(prp.move(0, data, false), c);
    }

    /** The status of command {@code c} whose data moved as {@code s} says: a fault is a Data Transfer Error. */
    int transferred(DmaStatus s, NvmeCommand c) {
        if (s.ok()) {
            return NvmeStatus.SUCCESS;
        }
        LOG.warn("{}: command {} (opcode {}): {}", name, c.cid(), c.opcode(), s);
        return NvmeStatus.DATA_TRANSFER_ERROR;
    }

    /** Power-on state for an FLR or a bus reset: every register, queue and feature (Base 2.0, 3.7.1). */
    @Override
    public void reset(PciReset kind) {
        lock.lock();
        try {
            controllerReset();
            cc = 0;
            csts = 0;
            aqa = 0;
            asq = 0;
            acq = 0;
            completions.powerOn();
            if (cmb != null) {
                cmb.reset();
            }
        } finally {
            lock.unlock();
        }
    }

    /** Stops the engines: the commands in flight complete, no command starts after this returns. */
    @Override
    public void quiesce() {
        lock.lock();
        try {
            stopped = true;
            wakeAll();
        } finally {
            lock.unlock();
        }
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(STOP_TIMEOUT_MS);
        for (CommandEngine e : engines) {
            if (e.thread.isAlive() && e.thread != Thread.currentThread()) {
                try {
                    long left = Math.max(1, deadline - System.nanoTime());
                    if (!e.thread.join(Duration.ofNanos(left))) {
                        LOG.error("{}: engine {} did not stop within {} ms", name, e.index, STOP_TIMEOUT_MS);
                    }
                } catch (InterruptedException ex) {
                    LOG.error("{}: interrupted waiting for engine {}", name, e.index, ex);
                    Thread.currentThread().interrupt();
                    return;
                }
            }
        }
    }

    /** The hardware left: the engines stop and the namespaces' storage is released. */
    @Override
    public void remove() {
        quiesce();
        media.close();
    }

    /** For tests: waits up to {@code timeout} until the engines are idle (none in flight, none they could take). */
    boolean awaitIdle(long timeout, TimeUnit unit) {
        long deadline = System.nanoTime() + unit.toNanos(timeout);
        while (System.nanoTime() < deadline) {
            lock.lock();
            try {
                if (inFlight == 0 && Arrays.stream(engines).allMatch(e -> e.next() == null)) {
                    return true;
                }
            } finally {
                lock.unlock();
            }
            Thread.yield();
        }
        return false;
    }
}
