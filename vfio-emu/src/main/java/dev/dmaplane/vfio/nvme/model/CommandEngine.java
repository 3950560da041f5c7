package dev.dmaplane.vfio.nvme.model;

import dev.dmaplane.hw.DmaStatus;
import dev.dmaplane.vfio.nvme.NvmeCommand;
import dev.dmaplane.vfio.nvme.NvmeStatus;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A command engine (QEMU's per-SQ {@code nvme_process_sq}; NVM Express Base Specification 2.0, 3.4.4 round robin
 * arbitration): a thread with its own entry and data buffers, serving the submission queues whose ID modulo the
 * engine count is its index. The burst it claimed is in its arrays, each command's outcome beside its slot.
 * <p>
 * It takes the controller's lock once to claim a burst (the SQ head moves past it, a completion entry is reserved in
 * the CQ for each command) and once to post the burst's completions, in order; the fetches, the namespace accesses
 * and the data DMAs run without it. The controller's collaborators it uses per command are held in its own final
 * fields, so a command costs no lookup through the controller.
 */
final class CommandEngine {
    private static final Logger LOG = LoggerFactory.getLogger(CommandEngine.class);
    /** The most commands claimed at once, whatever the Arbitration Burst allows. */
    static final int MAX_BURST = 64;
    /** The longest an engine with nothing to run watches for a doorbell before it parks. */
    static final long SPIN_MAX_NS = 20_000;
    /** The shortest watch worth starting. */
    static final long SPIN_MIN_NS = 1_000;
    /** With the spin budget gone, one park in this many watches again. */
    static final int SPIN_RETRY_EVERY = 64;

    final int index;
    /** How many engines the controller runs: this one serves the SQs {@code index}, {@code index + count}, ... */
    private final int count;
    private final Controller ctrl;
    private final ReentrantLock lock;
    private final Queues.Sq[] sqs;
    private final DeviceBus bus;
    private final AdminCommands admin;
    private final Completions completions;
    private final ControllerRegisters regs;
    final Condition work;
    /** Wakes so far; written under the lock, read by the spinning engine without it. */
    private volatile long wakes;
    /** The engine's spin budget in nanoseconds, 0 for none; its own. */
    private long spinNs = SPIN_MAX_NS;
    private int parksWithoutSpin;
    final Thread thread;
    final MemorySegment sqe = MemorySegment.ofArray(new byte[NvmeCommand.SIZE]);
    private final IoCommands io;
    /** The claimed entries' slots; the command read from each (null if none), its status, DW0 and fault. */
    final int[] slots = new int[MAX_BURST];
    final NvmeCommand[] commands = new NvmeCommand[MAX_BURST];
    final int[] status = new int[MAX_BURST];
    final int[] dw0 = new int[MAX_BURST];
    final String[] faults = new String[MAX_BURST];
    /** Where the round robin over this engine's queues goes on; reset with the controller. */
    int cursor;

    CommandEngine(Controller ctrl, int index, int count) {
        this.ctrl = ctrl;
        this.index = index;
        this.count = count;
        this.lock = ctrl.lock;
        this.sqs = ctrl.sqs;
        this.bus = ctrl.bus;
        this.admin = ctrl.admin;
        this.completions = ctrl.completions;
        this.regs = ctrl.regs;
        this.work = lock.newCondition();
        this.io = new IoCommands(ctrl);
        this.thread = Thread.ofPlatform().daemon().name(ctrl.name + " engine " + index).unstarted(this::loop);
    }

    /** A doorbell or state change for this engine: counted for it spinning, signalled for it parked. */
    void wake() {
        wakes++;
        work.signal();
    }

    /**
     * With the lock held and nothing to run: lets the lock go and watches for a {@link #wake} for up to its spin
     * budget, as a controller that keeps fetching sees the next doorbell at once, then takes the lock again.
     * Parking at once costs a futex wake-up on the doorbell's side and, on a quiet machine, the wake-up of a
     * halted CPU on this one, for each burst. The budget adapts as HotSpot's spinning on a contended monitor
     * does: a watch that saw its wake doubles it up to {@link #SPIN_MAX_NS}; one that timed out (the host's
     * thread was not running, as on a crowded machine, where watching only takes a CPU from it) halves it, to
     * none below {@link #SPIN_MIN_NS}, after which one park in {@link #SPIN_RETRY_EVERY} tries the whole budget
     * again (a shorter try would end before the host's refill rings, and never turn spinning back on). Whether a
     * wake came.
     */
    private boolean spinForWake() {
        long budget = spinNs;
        if (budget == 0) {
            if (++parksWithoutSpin < SPIN_RETRY_EVERY) {
                return false;
            }
            parksWithoutSpin = 0;
            budget = SPIN_MAX_NS;
        }
        long seen = wakes;
        lock.unlock();
        try {
            long end = System.nanoTime() + budget;
            do {
                Thread.onSpinWait();
                if (wakes != seen) {
                    spinNs = Math.min(SPIN_MAX_NS, 2 * budget);
                    return true;
                }
            } while (System.nanoTime() < end);
            spinNs = budget / 2 < SPIN_MIN_NS ? 0 : budget / 2;
            return false;
        } finally {
            lock.lock();
        }
    }

    /** Runs commands while there are some it may run, until stopped. */
    private void loop() {
        while (true) {
            Queues.Sq sq;
            int claimed;
            lock.lock();
            try {
                boolean spun = false;
                while ((sq = next()) == null && !ctrl.stopped) {
                    if (spun) {
                        work.await();
                        spun = false;
                    } else {
                        spun = !spinForWake();
                    }
                }
                if (ctrl.stopped) {
                    return;
                }
                if (sq.qid == 0) {
                    ctrl.takeAdmin(sq, sqe);
                    continue;
                }
                claimed = claim(sq);
            } catch (InterruptedException e) {
                LOG.error("{}: engine {} interrupted; it stops", ctrl.name, index, e);
                Thread.currentThread().interrupt();
                return;
            } catch (RuntimeException e) {
                LOG.error("{}: engine {} failed; controller fatal status", ctrl.name, index, e);
                regs.setFatalStatus();
                continue;
            } finally {
                lock.unlock();
            }
            run(sq, claimed);
        }
    }

    /** The next of this engine's submission queues, round robin, with a command whose CQ has room. */
    Queues.Sq next() {
        if (!regs.ready() || ctrl.draining > 0) {
            return null;
        }
        int n = count;
        int mine = (sqs.length - index + n - 1) / n;
        for (int i = 0; i < mine; i++) {
            int k = (cursor + i) % mine;
            Queues.Sq sq = sqs[index + k * n];
            if (sq != null && sq.hasCommands()) {
                if (!sq.cq.full()) {
                    cursor = k + 1;
                    return sq;
                }
                sq.cq.stalled = true;
            }
        }
        return null;
    }

    /**
     * Takes the I/O commands at the head of {@code sq}, as many as it holds up to the Arbitration Burst and as
     * its CQ has entries for: the head moves past them and a completion entry is reserved for each. The count.
     */
    private int claim(Queues.Sq sq) {
        int burst = Math.min(admin.arbitrationBurst(), MAX_BURST);
        int n = 0;
        do {
            slots[n++] = sq.head;
            sq.head = (sq.head + 1) % sq.entries;
            sq.cq.reserved++;
            ctrl.inFlight++;
        } while (n < burst && sq.hasCommands() && !sq.cq.full());
        sq.inFlight = true;
        return n;
    }

    /**
     * Fetches and runs the {@code claimed} commands without the lock, then takes it once to post their
     * completions in order. A fetch the bus refuses stops the burst: the controller is fatal, and the entries
     * after it are neither run nor completed.
     */
    private void run(Queues.Sq sq, int claimed) {
        int ran = 0;
        while (ran < claimed) {
            if (!execute(sq, ran++)) {
                break;
            }
        }
        lock.lock();
        try {
            sq.cq.reserved -= claimed;
            for (int i = 0; i < ran; i++) {
                NvmeCommand c = commands[i];
                commands[i] = null;
                if (faults[i] != null) {
                    regs.fatal(faults[i]);
                    faults[i] = null;
                } else if (c == null) {
                    regs.fatal("SQ" + sq.qid + " entry " + slots[i] + " could not be read");
                } else {
                    if (status[i] != NvmeStatus.SUCCESS) {
                        ctrl.health.error(sq.qid, c, status[i]);
                    }
                    completions.post(sq, c.cid(), status[i], dw0[i]);
                }
            }
        } finally {
            sq.inFlight = false;
            ctrl.completed(claimed);
            lock.unlock();
        }
    }

    /** Fetches and runs the burst's command {@code i}, its outcome in the arrays: false if the fetch faulted. */
    private boolean execute(Queues.Sq sq, int i) {
        int slot = slots[i];
        try {
            DmaStatus fetched = bus.read(sq.base + (long) slot * NvmeCommand.SIZE, sqe);
            if (!fetched.ok()) {
                faults[i] = "fetching SQ" + sq.qid + " entry " + slot + ": " + fetched;
                return false;
            }
            NvmeCommand c = NvmeCommand.readFrom(sqe);
            commands[i] = c;
            Result r = io.execute(c);
            status[i] = r.status();
            dw0[i] = r.dw0();
        } catch (RuntimeException e) {
            LOG.error("{}: SQ{} entry {} failed", ctrl.name, sq.qid, slot, e);
            status[i] = NvmeStatus.INTERNAL_ERROR;
            dw0[i] = 0;
        }
        return true;
    }
}
