package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.RdmaDeviceHandle;
import dev.dmaplane.rdma.spi.RecvWqe;
import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpAttrMask;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcStatus;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SequencedMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * The per-HCA engine: the {@link Requester} ({@code rxe_req.c}), the {@link Responder} ({@code rxe_resp.c}) and the
 * {@link Completer} ({@code rxe_comp.c}) of every QP of the device, with the per-QP state they share
 * ({@link QpCtx}), run as rxe runs its tasks ({@code rxe_run_task}): by whichever
 * thread has work for the engine and finds it idle, in that thread (a doorbell, a packet from the fabric), and by
 * the engine's own worker thread for the timers. Work that arrives while another thread runs the engine is queued,
 * and that thread runs it before it lets the engine go ({@link #release}). One thread at a time runs the engine
 * ({@link #lock}).
 * Packets it sends are collected and handed to the fabric as one burst per pass; the responder acknowledges each
 * burst with one coalesced ACK per QP (IBTA 9.7.5.1.1: an ACK acknowledges every PSN before it). RC messages are
 * pipelined up to {@link #MAX_INFLIGHT} per QP; retries (transport timeout and RNR) resend every message in flight
 * from the oldest one's first PSN (go-back-N).
 * <p>Size: about 800 lines, scheduling, counters, timers and per-QP context in one class; issue 11 splits it as rxe
 * does ({@code rxe_task.c}, {@code rxe_hw_counters.c}).
 */
final class Engine implements Runnable {
    private static final Logger LOG = LoggerFactory.getLogger(Engine.class);
    /**
     * Longest transport timeout used: the QP's {@code timeout} (4.096 us * 2^timeout, IBTA 9.7.6.1.3) is honoured up
     * to this, and 0 ("infinite") means this too, so that a peer that vanished is noticed within seconds.
     */
    static final long MAX_TIMEOUT_NS = TimeUnit.SECONDS.toNanos(1);
    /** Longest RNR delay used. */
    static final long MAX_RNR_NS = TimeUnit.MILLISECONDS.toNanos(2);
    /** Shortest transport timeout used: a soft HCA shares its CPU. */
    static final long MIN_TIMEOUT_NS = TimeUnit.MILLISECONDS.toNanos(10);
    /** With single packets, the requester asks for an acknowledgement every this many packets of a long message. */
    static final int ACK_EVERY = 64;
    /** RC messages in flight per QP. */
    static final int MAX_INFLIGHT = 256;
    /**
     * Messages at least this long whose payload is one SGE are sent cut-through: the packets carry the range of the
     * requester's lease and the responder's HCA stores it straight from there ({@link Packet.Payload.Span}); shorter
     * ones are gathered into the packets first.
     */
    static final long CUT_THROUGH_MIN = 16 * 1024;
    /** Packets collected before a pass hands them to the fabric. */
    static final int BURST = 64;

    private final String name;
    final Fabric fabric;
    final Gid gid;
    volatile RdmaDeviceHandle handle;
    private final ConcurrentLinkedQueue<Packet> inbox = new ConcurrentLinkedQueue<>();
    private final ConcurrentLinkedQueue<QpCtx> ready = new ConcurrentLinkedQueue<>();
    private final Map<Integer, QpCtx> qps = new ConcurrentHashMap<>();
    /** Held by whoever runs the engine, and by control hooks that change QP state. */
    final ReentrantLock lock = new ReentrantLock();
    private volatile boolean running;
    /** The worker holds the engine: a thread with work waits for its pass to end instead of storing. */
    private volatile boolean workerActive;
    /** Longest a thread with work waits for the worker's pass before it stores the work instead. */
    static final long WORKER_WAIT_NS = TimeUnit.MICROSECONDS.toNanos(200);
    /** Whether the current thread is the worker of an engine (those never wait for another engine). */
    private static final ThreadLocal<Boolean> IS_WORKER = ThreadLocal.withInitial(() -> false);
    private Thread thread;
    /** When the worker will wake for the timers next (it looks at least every {@link #IDLE_WAKE_NS}). */
    private volatile long workerWake = System.nanoTime();
    static final long IDLE_WAKE_NS = TimeUnit.MILLISECONDS.toNanos(50);

    // guarded by lock
    private ArrayList<Packet> tx = new ArrayList<>();
    private ArrayList<Packet> txSpare = new ArrayList<>();
    final ArrayList<QpCtx> acks = new ArrayList<>();
    /** The responder's remote lease and the requester's local one, kept for a round of a pass. */
    private final LeaseCache remoteLeases = new LeaseCache(1);
    /** As many as a burst has packets: short payloads are ranges of these until the burst leaves. */
    private final LeaseCache localLeases = new LeaseCache(BURST);
    final Requester requester = new Requester(this);
    final Completer completer = new Completer(this);
    final Responder responder = new Responder(this);

    // counters: written by the thread running the engine (release stores, no fence), read by anyone
    final AtomicLong pktsSent = new AtomicLong();
    final AtomicLong pktsRecv = new AtomicLong();
    volatile long retries;
    /** Retransmissions that resumed inside a message (at the PSN a NAK or a partial ACK gave). */
    volatile long resentFromMiddle;
    volatile long rnrNaksSent;
    /** Requests the responder saw again ({@code duplicate_request}), and sequence NAKs it sent ({@code out_of_seq_request}). */
    volatile long duplicates;
    volatile long outOfSeqNaksSent;
    /** NAKs the requester received: PSN sequence error and RNR ({@code rcvd_seq_err}, {@code rcvd_rnr_err}). */
    volatile long seqNaksRcvd;
    volatile long rnrNaksRcvd;
    /** Requests that ran out of transport and RNR retries. */
    volatile long retryExceeded;
    volatile long rnrRetryExceeded;
    /** Passes run by the worker thread, and by other threads (doorbells and deliveries that found the engine idle). */
    volatile long workerPasses;
    volatile long inlinePasses;
    /** Bursts received and stored because the engine was busy (store-and-forward), and delivered cut-through. */
    final AtomicLong burstsStored = new AtomicLong(); // by senders
    volatile long burstsCutThrough;
    /** Trains of single-packet WRITE messages the requester sent ({@link Packet.Payload.Messages}). */
    volatile long trainsSent;
    /** Whether the port's netdev has carrier: without it no packet leaves or arrives. */
    private volatile boolean carrier = true;
    /** Times the carrier went away ({@code link_downed}). */
    volatile long linkDowned;
    /**
     * The unexpected exception that killed the HCA (a firmware crash), or null: once set, no pass runs, packets to the
     * port are dropped, and the worker reports it to the core ({@link RdmaDeviceHandle#fatal}) and ends.
     */
    private volatile Throwable crash;

    Engine(String name, Fabric fabric, Gid gid) {
        this.name = name;
        this.fabric = fabric;
        this.gid = gid;
    }

    Gid gid() {
        return gid;
    }

    void start(RdmaDeviceHandle h) {
        this.handle = h;
        running = true;
        thread = Thread.ofPlatform().name("softroce-" + name).daemon(true).start(this);
    }

    /** Stops the worker and waits for it and for any other thread running the engine; nothing runs afterwards. */
    void stop() {
        running = false;
        Thread t = thread;
        if (t != null) {
            LockSupport.unpark(t);
            boolean interrupted = false;
            while (t.isAlive()) {
                try {
                    t.join();
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
        lock.lock(); // a pass another thread began before running fell ends before this returns
        try {
            inbox.clear();
            ready.clear();
            tx.clear();
            acks.clear();
        } finally {
            lock.unlock();
        }
    }

    boolean isRunning() {
        Thread t = thread;
        return t != null && t.isAlive();
    }

    /** Whether the engine runs work: started, not stopped, not crashed. */
    private boolean live() {
        return running && crash == null;
    }

    /** The exception that killed the HCA, or null. */
    Throwable crash() {
        return crash;
    }

    /**
     * A burst from the fabric. If the engine is idle the calling (sending) thread runs it now, while the sender's
     * payload ranges are still leased (cut-through); otherwise the packets are stored, their payload copied off
     * the sender, for the thread running the engine (which runs them before it lets the engine go).
     */
    boolean receive(List<Packet> burst) {
        if (!live() || !carrier) {
            return false; // dropped, as on a link without carrier or by a dead HCA
        }
        if (!lock.isHeldByCurrentThread() && enterInline()) {
            try {
                if (!live()) {
                    return false;
                }
                inlinePasses++;
                burstsCutThrough++;
                guarded(() -> {
                    drainInbox(); // what was stored before comes first
                    for (Packet p : burst) {
                        receiveOne(p);
                    }
                    responder.flushAcks();
                });
                pass();
            } finally {
                release();
            }
            return true;
        }
        burstsStored.incrementAndGet();
        for (Packet p : burst) {
            inbox.add(p.materialized());
        }
        runQueuedIfIdle(); // the holder may have let the engine go before they were queued
        return true;
    }

    /**
     * Releases the engine, then runs what was queued while it was held if nobody else took it meanwhile. With a
     * thread that queues work first and then tries to take the engine, this hands every piece of work to a thread
     * that runs it, without waking the worker: one of the two sees the other's step.
     */
    void release() {
        lock.unlock();
        runQueuedIfIdle();
    }

    /** Runs queued work in the calling thread for as long as there is some and nobody else runs the engine. */
    private void runQueuedIfIdle() {
        while (live() && (!inbox.isEmpty() || !ready.isEmpty()) && !lock.isHeldByCurrentThread() && lock.tryLock()) {
            try {
                inlinePasses++;
                pass();
            } finally {
                lock.unlock();
            }
        }
    }

    /**
     * Takes the engine for a pass in the calling thread if it is idle, or as soon as the worker's timer pass ends
     * if the worker runs it (waiting at most {@link #WORKER_WAIT_NS}): a thread with traffic hands the worker none,
     * or the worker would end up carrying the data path with every payload copied to reach it. A pass another
     * thread runs is not waited for (two threads that deliver to each other's engines would deadlock), nor does a
     * worker wait; the caller then stores its work, and the holder runs it as it releases the engine.
     */
    private boolean enterInline() {
        if (lock.tryLock()) {
            return true;
        }
        if (IS_WORKER.get()) {
            return false; // a worker never waits while it runs its own engine: no cycle of waits can form
        }
        // the worker holds the engine for its timer pass, which is short: wait for it, giving it the CPU after a
        // short spin in case it is the one waiting for a CPU. Not for longer than WORKER_WAIT_NS: the worker may
        // itself wait, for a region's lock that a deregistration holds until this thread's kept leases close.
        long deadline = 0;
        for (int spins = 0; workerActive; spins++) {
            if (spins < 100) {
                Thread.onSpinWait();
            } else if (deadline == 0) {
                deadline = System.nanoTime() + WORKER_WAIT_NS;
            } else if (System.nanoTime() - deadline > 0) {
                return false;
            } else {
                Thread.yield();
            }
            if (lock.tryLock()) {
                return true;
            }
        }
        return lock.tryLock();
    }

    /**
     * The port's hardware counters as rxe names them ({@code rxe_hw_counters.c}, shown by {@code rdma statistic}),
     * then this engine's own, prefixed {@code dmaplane_}.
     */
    SequencedMap<String, Long> counters() {
        var m = new LinkedHashMap<String, Long>();
        m.put("sent_pkts", pktsSent.get());
        m.put("rcvd_pkts", pktsRecv.get());
        m.put("duplicate_request", duplicates);
        m.put("out_of_seq_request", outOfSeqNaksSent);
        m.put("rcvd_rnr_err", rnrNaksRcvd);
        m.put("send_rnr_err", rnrNaksSent);
        m.put("rcvd_seq_err", seqNaksRcvd);
        m.put("retry_exceeded_err", retryExceeded);
        m.put("retry_rnr_exceeded_err", rnrRetryExceeded);
        m.put("completer_retry_err", retries);
        m.put("link_downed", linkDowned);
        m.put("dmaplane_resent_from_middle", resentFromMiddle);
        m.put("dmaplane_bursts_cut_through", burstsCutThrough);
        m.put("dmaplane_bursts_stored", burstsStored.get());
        m.put("dmaplane_write_trains", trainsSent);
        m.put("dmaplane_passes_inline", inlinePasses);
        m.put("dmaplane_passes_worker", workerPasses);
        return m;
    }

    // control, called from provider hooks

    QpCtx ctx(HwQp qp) {
        return qps.computeIfAbsent(qp.qpNum(), n -> new QpCtx(qp));
    }

    void destroy(HwQp qp) {
        lock.lock();
        try {
            qps.remove(qp.qpNum());
        } finally {
            release();
        }
    }

    /**
     * Runs {@code change} (the core's hook and commit of a modify_qp) with the engine held, so that no pass sees the
     * QP between them ({@code rxe_disable_task} around {@code rxe_qp_reset}); what was rung meanwhile runs after.
     */
    <T> T quiesce(Supplier<T> change) {
        lock.lock();
        try {
            return change.get();
        } finally {
            release();
        }
    }

    /** Test hook: runs at the end of {@link #modify}, after the engine took a transition, before the core commits it. */
    volatile Consumer<HwQp> modified;

    void modify(HwQp qp, QpAttr attr, QpState from, QpState to) {
        lock.lock();
        try {
            QpCtx c = ctx(qp);
            if (to == QpState.RESET || to == QpState.ERR) {
                c.reset();
            }
            if (attr.has(QpAttrMask.RQ_PSN)) {
                c.epsn = attr.rqPsn() & Packet.PSN_MASK;
            }
            if (attr.has(QpAttrMask.SQ_PSN)) {
                c.npsn = attr.sqPsn() & Packet.PSN_MASK;
            }
        } finally {
            release();
        }
        doorbell(qp);
        Consumer<HwQp> hook = modified;
        if (hook != null) {
            hook.accept(qp);
        }
    }

    /**
     * The send queue has work: the QP is queued for the requester and, if the engine is idle, the ringing thread
     * runs it now ({@code rxe_run_task}); otherwise the thread running it picks it up as it releases it.
     */
    void doorbell(HwQp qp) {
        if (!live()) {
            return; // a stopped or dead HCA rings nothing: the core flushes the queues as the device leaves
        }
        QpCtx c = ctx(qp);
        if (c.queued.compareAndSet(false, true)) {
            ready.add(c);
        }
        if (lock.isHeldByCurrentThread()) {
            return; // the pass this thread is in will see it
        }
        if (enterInline()) {
            try {
                if (live()) {
                    inlinePasses++;
                    pass();
                }
            } finally {
                release();
            }
        }
        // else: whoever holds the engine runs it when it releases it (release())
    }

    @Override
    public void run() {
        IS_WORKER.set(true);
        while (live()) {
            lock.lock();
            workerActive = true;
            try {
                workerPasses++;
                pass();
            } finally {
                workerActive = false;
                release();
            }
            if (inbox.isEmpty() && ready.isEmpty() && live()) {
                LockSupport.parkNanos(this, Math.max(1, workerWake - System.nanoTime()));
            }
        }
        Throwable t = crash;
        if (t != null && running) {
            reportCrash(t);
        }
    }

    /**
     * The worker, holding no lock and in no verb, hands a crash to the core: DEVICE_FATAL to every context, the
     * device disassociated as on hot unplug (every QP flushed, every region unpinned and unmapped). The worker then
     * ends: a dead HCA runs nothing.
     */
    private void reportCrash(Throwable t) {
        try {
            handle.fatal("softroce engine of " + name + ": " + t);
        } catch (RuntimeException e) {
            LOG.error("{}: disassociating the device after its fatal error failed", name, e);
        }
    }

    /**
     * Runs {@code work} on the engine (the caller holds it); an exception other than the defined errno and status
     * paths (which the requester, responder and completer turn into NAKs and completion statuses where they occur)
     * is a fatal device error ({@link #crash}). The leases kept for the round close either way.
     */
    private void guarded(Runnable work) {
        try {
            try {
                work.run();
            } finally {
                clearLeases();
            }
        } catch (RuntimeException | Error e) {
            crash(e);
        }
    }

    /**
     * A fatal device error, as a firmware crash: logged once with its stack, the engine's work dropped (nothing more
     * is sent or completed by it), and the worker woken to report it to the core. Called by the thread holding the
     * engine.
     */
    void crash(Throwable e) {
        Throwable first = crash;
        if (first != null) { // the HCA is dead already: what its unwinding met is kept with the first
            LOG.error("{}: unexpected exception in the HCA after its fatal error", name, e);
            first.addSuppressed(e);
            return;
        }
        crash = e;
        LOG.error("{}: unexpected exception in the HCA: fatal device error, the device is disassociated", name, e);
        inbox.clear();
        ready.clear();
        tx.clear();
        acks.clear();
        wakeWorkerThread();
    }

    /**
     * Runs everything pending (packets, doorbells, due timers) until nothing is, handing what it sends to the
     * fabric; the caller holds the lock. Wakes the worker if a timer is due before it planned to wake.
     */
    private void pass() {
        guarded(this::passRounds); // kept leases never outlive the pass: the next may run on another thread
    }

    private void passRounds() {
        boolean more = true;
        while (more && live()) {
            more = drainInbox();
            QpCtx c;
            while ((c = ready.poll()) != null) {
                more = true;
                c.queued.set(false);
                if (qps.get(c.qp.qpNum()) == c) {
                    requester.run(c);
                }
            }
            clearLeases(); // the round's packets go to the fabric, then its leases close
            if (!more) {
                boolean worker = Thread.currentThread() == thread;
                long next = 0;
                // the worker looks at every timer; a thread that runs the engine inline only every
                // INLINE_TIMER_PASSES passes (so busy traffic that keeps the worker out still sees its timers fire),
                // and otherwise wakes the worker for a timer it armed earlier than the worker planned to look
                if (worker || ++inlinePassesSinceTimers >= INLINE_TIMER_PASSES) {
                    inlinePassesSinceTimers = 0;
                    next = timers();
                }
                more = flushTx() || !inbox.isEmpty() || !ready.isEmpty();
                if (worker) {
                    workerWake = next != 0 ? next : System.nanoTime() + IDLE_WAKE_NS;
                } else {
                    long due = next == 0 || (earliestArmed != 0 && earliestArmed - next < 0) ? earliestArmed : next;
                    if (due != 0 && due - workerWake < 0) {
                        workerWake = due; // a timer earlier than the worker planned to wake
                        wakeWorkerThread();
                    }
                }
                earliestArmed = 0;
            }
        }
    }

    /** A thread running the engine inline looks at the timers itself once in this many passes. */
    static final int INLINE_TIMER_PASSES = 64;
    // guarded by lock
    private int inlinePassesSinceTimers;
    /** The earliest deadline armed since the last round ended (0: none). */
    private long earliestArmed;

    /** Arms {@code c}'s transport or RNR timer for {@code deadline} (a {@link System#nanoTime} value). */
    void armTimer(QpCtx c, long deadline) {
        c.deadline = deadline;
        if (earliestArmed == 0 || deadline - earliestArmed < 0) {
            earliestArmed = deadline;
        }
    }

    /**
     * Closes the leases kept for this round (a deregistration waits for them, so they are never kept long), after
     * handing the fabric the packets whose payload is a range of one.
     */
    void clearLeases() {
        try {
            flushTx();
        } finally {
            remoteLeases.clear();
            localLeases.clear();
        }
    }

    /** A remote access's lease, kept from an earlier access of this round or taken now (and kept if stable). */
    LeaseCache.Held remote(HwQp qp, int rkey, long va, long len, int access) {
        LeaseCache.Held h = remoteLeases.find(qp, rkey, access, va, len);
        return h != null ? h : remoteLeases.keep(handle.memory().remote(qp, rkey, va, len, access), qp, rkey, access, va,
                len);
    }

    /** A local read's lease, kept from an earlier access of this round or taken now (and kept if stable). */
    LeaseCache.Held local(HwQp qp, Sge sge) {
        LeaseCache.Held h = localLeases.find(qp.pd(), sge.lkey(), 0, sge.addr(), sge.length());
        if (h != null) {
            return h;
        }
        DmaLease l = handle.memory().local(qp.pd(), sge.lkey(), sge.addr(), sge.length(), 0);
        if (l.stable() && localLeases.full()) {
            flushTx(); // packets waiting may carry ranges of the leases about to be closed
        }
        return localLeases.keep(l, qp.pd(), sge.lkey(), 0, sge.addr(), sge.length());
    }

    /** Whether keeping one more local lease would first close those kept (see {@link #local}). */
    boolean localLeasesFull() {
        return localLeases.full();
    }

    private void wakeWorkerThread() {
        Thread t = thread;
        if (t != null) {
            LockSupport.unpark(t);
        }
    }

    /** Handles the stored packets; whether there were any. */
    private boolean drainInbox() {
        boolean any = false;
        Packet p;
        int budget = 4096;
        while (budget-- > 0 && (p = inbox.poll()) != null) {
            any = true;
            receiveOne(p);
        }
        if (any) {
            responder.flushAcks();
        }
        return any;
    }

    private void receiveOne(Packet p) {
        pktsRecv.setRelease(pktsRecv.getPlain() + p.count());
        dispatch(p);
    }

    /** Hands the packets sent so far to the fabric (or drops them without carrier); whether there were any. */
    boolean flushTx() {
        if (tx.isEmpty()) {
            return false;
        }
        if (crash != null) {
            tx.clear(); // a dead HCA sends nothing
            return false;
        }
        ArrayList<Packet> out = tx;
        tx = txSpare;
        txSpare = out;
        try {
            if (carrier) {
                fabric.send(out);
            } else {
                fabric.dropped.addAndGet(out.size());
            }
        } finally {
            out.clear();
        }
        return true;
    }

    /** The netdev's carrier came or went; going away counts in {@code link_downed}. */
    void carrier(boolean up) {
        if (!up && carrier) {
            linkDowned++;
        }
        carrier = up;
    }

    /** Fires due timers; returns the earliest pending deadline or 0. */
    private long timers() {
        long now = System.nanoTime();
        long next = 0;
        for (QpCtx c : qps.values()) {
            dropFlushed(c);
            if (c.inflight.isEmpty()) {
                continue;
            }
            if (c.deadline - now <= 0) {
                if (c.rnrWait) {
                    c.rnrWait = false;
                    requester.retransmit(c, -1);
                } else if (c.retryLeft-- > 0) {
                    retries++;
                    requester.retransmit(c, -1);
                } else {
                    retryExceeded++;
                    completer.finish(c, WcStatus.RETRY_EXC_ERR);
                    requester.run(c);
                    continue;
                }
            }
            if (!c.inflight.isEmpty() && (next == 0 || c.deadline - next < 0)) {
                next = c.deadline;
            }
        }
        return next;
    }

    /** Forgets messages the core flushed (the QP went to ERR or RESET by modify). */
    static void dropFlushed(QpCtx c) {
        if (!c.inflight.isEmpty() && c.inflight.peekFirst().w.isCompleted()) {
            c.inflight.clear();
            c.readsInFlight = 0;
            c.rnrWait = false;
        }
        if (c.held != null && c.held.isCompleted()) {
            c.held = null;
            c.heldStatus = null;
        }
    }

    static long timeoutNs(int timeout) {
        if (timeout == 0 || timeout > 31) {
            return MAX_TIMEOUT_NS;
        }
        return Math.max(MIN_TIMEOUT_NS, Math.min(MAX_TIMEOUT_NS, 4096L << timeout));
    }

    /** IBTA table 45 (minimum RNR NAK timer field), in microseconds, capped to keep retries short. */
    static long rnrNs(int code) {
        long[] us = {655360, 10, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640, 960, 1280, 1920, 2560, 3840,
                5120, 7680, 10240, 15360, 20480, 30720, 40960, 61440, 81920, 122880, 163840, 245760, 327680, 491520};
        return Math.min(MAX_RNR_NS, us[code & 31] * 1000L);
    }

    private void dispatch(Packet p) {
        QpCtx c = qps.get(p.destQpn()); // the QPs created on this HCA and not destroyed
        if (c == null) {
            return; // unknown QPN: dropped as rxe does
        }
        HwQp qp = c.qp;
        QpState s = qp.state();
        if (p.op().isResponse()) {
            if (qp.type() == QpType.RC && (s == QpState.RTS || s == QpState.SQD)
                    && p.srcQpn() == qp.attr().destQpNum()) {
                completer.onResponse(c, p);
                requester.run(c);
            }
            return;
        }
        responder.onRequest(c, qp, p);
    }

    void send(Packet p) {
        pktsSent.setRelease(pktsSent.getPlain() + p.count()); // only the thread running the engine writes it
        tx.add(p);
        if (tx.size() >= BURST) {
            flushTx();
        }
    }

    /** An RC message in flight: its work request, PSN range, payload or read buffer. */
    static final class Msg {
        final SendWqe w;
        int firstPsn;
        int lastPsn;
        /**
         * The last PSN of this message a coalesced ACK covered, or of a read the last response taken in order
         * (firstPsn - 1 while none).
         */
        int ackedThrough;
        /** The response PSN a read was last asked again from (-1: never). */
        int rerequested = -1;
        int mtu;
        byte[] data;
        /** A short payload leased for its first transmission only ({@link Requester}); null once sent. */
        Packet.Payload firstPayload;
        byte[] readBuf;

        private Packet.Payload segment;

        Msg(SendWqe w) {
            this.w = w;
        }

        /** The gathered payload, made once and sliced into packets on every (re)transmission. */
        Packet.Payload segment() {
            if (segment == null) {
                segment = Packet.Payload.Bytes.of(data);
            }
            return segment;
        }
    }

    /** Driver-private state of one QP (what {@code struct rxe_qp} keeps in its req, resp and comp parts). */
    static final class QpCtx {
        final HwQp qp;
        final AtomicBoolean queued = new AtomicBoolean();
        // requester
        int npsn;
        final ArrayDeque<Msg> inflight = new ArrayDeque<>();
        int readsInFlight;
        SendWqe held;
        WcStatus heldStatus;
        int retryLeft;
        int rnrLeft;
        boolean rnrWait;
        long deadline;
        // responder
        int epsn;
        int msn;
        boolean nakSent;
        /** A coalesced ACK waiting for the end of the burst: its PSN and where it goes. */
        boolean ackWaiting;
        int ackPsn;
        Gid ackDgid;
        int ackDqpn;
        RecvWqe recv;
        byte[] recvBuf;
        long recvOff;
        long wva;
        int wrkey;
        long woff;
        /**
         * Results of the last atomics, by PSN, to answer duplicates: rxe's responder resources, a ring of
         * {@code max_dest_rd_atomic} entries recycled oldest first.
         */
        final Map<Integer, Long> atomicResults = new LinkedHashMap<>() {
            @Override
            protected boolean removeEldestEntry(Map.Entry<Integer, Long> e) {
                return size() > Math.max(1, qp.attr().maxDestRdAtomic());
            }
        };

        QpCtx(HwQp qp) {
            this.qp = qp;
        }

        void reset() {
            inflight.clear();
            readsInFlight = 0;
            held = null;
            heldStatus = null;
            rnrWait = false;
            resetResponder();
        }

        void resetResponder() {
            ackWaiting = false;
            recv = null;
            recvBuf = null;
            recvOff = 0;
            nakSent = false;
        }
    }
}
