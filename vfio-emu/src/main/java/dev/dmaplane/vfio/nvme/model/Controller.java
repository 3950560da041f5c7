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

/**
 * One NVMe controller (QEMU's {@code NvmeCtrl} in {@code hw/nvme/ctrl.c}): the state its parts share, the Controller
 * Reset (NVM Express Base Specification 2.0, 3.7.2) that returns them to their start, and its life as a device model
 * (start, reset, quiesce, remove). The parts: {@link ControllerRegisters} (BAR0 and the CC/CSTS transitions),
 * {@link Doorbells}, {@link CommandEngine} (up to {@link #ENGINES} threads; engine {@code i} serves the submission
 * queues whose ID modulo the engine count is {@code i}, round robin, in Arbitration Bursts, Base 2.0, 3.4.4),
 * {@link Completions} (completion entries and interrupts), {@link AsyncEvents}, the command sets
 * {@link AdminCommands} and {@link IoCommands}, the queues in {@link Queues} and the buffer in {@link Cmb}.
 * <p>
 * Locking: queue, register and feature state is guarded by {@link #lock}. A doorbell is a register store: it records
 * the tail or head under the lock and wakes the queue's engine, never waiting for a command. An engine takes the
 * lock once to claim a burst of commands (the SQ head moves past them, a completion entry is reserved in the CQ for
 * each) and once to post their completions, in order; fetching the entries, the namespace accesses and the data DMAs
 * run without it. Admin commands run whole under the lock. A controller reset, a Delete I/O SQ and {@link #quiesce}
 * first let the commands in flight finish ({@link #drain}) and no command starts meanwhile.
 */
final class Controller implements ModelDevice {
    private static final Logger LOG = LoggerFactory.getLogger(Controller.class);
    /** How long {@link #quiesce} waits for the device thread. */
    static final long STOP_TIMEOUT_MS = 10_000;
    /** Identify Controller AERL: four Asynchronous Event Requests outstanding at most. */
    static final int AERL = 3;
    /** Identify Controller ELPE: 64 Error Information entries. */
    static final int ELPE = 63;
    /** Command engines at most: a small pool, each serving every fourth submission queue. */
    static final int ENGINES = 4;

    final ModelContext ctx;
    final NvmeConfig cfg;
    final Media media;
    final String name;
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
    final ControllerRegisters regs;
    final AsyncEvents asyncEvents;

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
        this.regs = new ControllerRegisters(this, cfg, cmb != null);
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
        this.registers = regs.build(name, completions, cmb, doorbells, cfg.ioQueues(), cfg.dstrd());
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

    /**
     * Controller Reset (Base 2.0, 3.7.2): every queue is deleted, outstanding commands (Asynchronous Event
     * Requests included) are dropped without completions, pending events are forgotten, CSTS.RDY and CFS clear.
     */
    void controllerReset() {
        drain(null);
        Arrays.fill(sqs, null);
        Arrays.fill(cqs, null);
        asyncEvents.clear();
        completions.dropPending();
        for (CommandEngine e : engines) {
            e.cursor = 0;
        }
        regs.resetStatus();
        resetFeatures();
    }

    private void resetFeatures() {
        grantedSqs = cfg.ioQueues();
        grantedCqs = cfg.ioQueues();
        admin.resetFeatures();
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
            regs.fatal("fetching SQ" + sq.qid + " entry " + sq.head + ": " + fetched);
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

    /** Moves {@code data} to the host memory the command's PRPs describe, walked with {@code prp}. */
    int toHost(Prp prp, NvmeCommand c, MemorySegment data) {
        int st = prp.walk(c.prp1(), c.prp2(), data.byteSize(), regs.pageSize());
        return st != NvmeStatus.SUCCESS ? st : transferred(prp.move(0, data, true), c);
    }

    /** Fills {@code data} from the host memory the command's PRPs describe, walked with {@code prp}. */
    int fromHost(Prp prp, NvmeCommand c, MemorySegment data) {
        int st = prp.walk(c.prp1(), c.prp2(), data.byteSize(), regs.pageSize());
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
            regs.powerOn();
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
