package dev.dmaplane.driver.softroce;

import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.driver.softroce.Packet.Op;
import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.spi.RdmaDeviceHandle;
import dev.dmaplane.rdma.spi.RecvResult;
import dev.dmaplane.rdma.spi.RecvWqe;
import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The per-HCA engine: the requester ({@code rxe_req.c}), the responder ({@code rxe_resp.c}) and the completer
 * ({@code rxe_comp.c}) of every QP of the device, run as rxe runs its tasks ({@code rxe_run_task}): by whichever
 * thread has work for the engine and finds it idle, in that thread (a doorbell, a packet from the fabric), and by
 * the engine's own worker thread otherwise and for the timers. One thread at a time runs the engine ({@link #lock}).
 * Packets it sends are collected and handed to the fabric as one burst per pass; the responder acknowledges each
 * burst with one coalesced ACK per QP (IBTA 9.7.5.1.1: an ACK acknowledges every PSN before it). RC messages are
 * pipelined up to {@link #MAX_INFLIGHT} per QP; retries (transport timeout and RNR) resend every message in flight
 * from the oldest one's first PSN (go-back-N).
 */
final class Engine implements Runnable {
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
    private final Fabric fabric;
    private final Gid gid;
    private volatile RdmaDeviceHandle handle;
    private final ConcurrentLinkedQueue<Packet> inbox = new ConcurrentLinkedQueue<>();
    private final ConcurrentLinkedQueue<QpCtx> ready = new ConcurrentLinkedQueue<>();
    private final Map<Integer, QpCtx> qps = new ConcurrentHashMap<>();
    /** Held by whoever runs the engine, and by control hooks that change QP state. */
    final ReentrantLock lock = new ReentrantLock();
    private volatile boolean running;
    private Thread thread;
    /** When the worker will wake for the timers next (it looks at least every {@link #IDLE_WAKE_NS}). */
    private volatile long workerWake = System.nanoTime();
    static final long IDLE_WAKE_NS = TimeUnit.MILLISECONDS.toNanos(50);

    // guarded by lock
    private ArrayList<Packet> tx = new ArrayList<>();
    private ArrayList<Packet> txSpare = new ArrayList<>();
    private final ArrayList<QpCtx> acks = new ArrayList<>();
    /** The responder's remote lease and the requester's local one, kept for a round of a pass. */
    private final LeaseCache remoteLeases = new LeaseCache();
    private final LeaseCache localLeases = new LeaseCache();

    // counters: written by the thread running the engine (release stores, no fence), read by anyone
    final java.util.concurrent.atomic.AtomicLong pktsSent = new java.util.concurrent.atomic.AtomicLong();
    final java.util.concurrent.atomic.AtomicLong pktsRecv = new java.util.concurrent.atomic.AtomicLong();
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
    final java.util.concurrent.atomic.AtomicLong burstsStored = new java.util.concurrent.atomic.AtomicLong(); // by senders
    volatile long burstsCutThrough;
    /** Work the engine could not do (a QP destroyed or moved under it): counted, and the HCA goes on. */
    volatile long errors;
    volatile RuntimeException lastError;

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

    /**
     * A burst from the fabric. If the engine is idle the calling (sending) thread runs it now, while the sender's
     * payload ranges are still leased (cut-through); otherwise the packets are stored, their payload copied off
     * the sender, for the thread running the engine.
     */
    boolean receive(List<Packet> burst) {
        if (!running) {
            return false;
        }
        if (!lock.isHeldByCurrentThread() && lock.tryLock()) {
            try {
                if (!running) {
                    return false;
                }
                inlinePasses++;
                burstsCutThrough++;
                try {
                    drainInbox(); // what was stored before comes first
                    for (Packet p : burst) {
                        receiveOne(p);
                    }
                    flushAcks();
                } finally {
                    clearLeases();
                }
                pass();
            } finally {
                lock.unlock();
            }
            return true;
        }
        burstsStored.incrementAndGet();
        for (Packet p : burst) {
            inbox.add(p.materialized());
        }
        wakeWorker();
        return true;
    }

    private void wakeWorker() {
        if (!lock.isHeldByCurrentThread()) {
            Thread t = thread;
            if (t != null) {
                LockSupport.unpark(t);
            }
        }
    }

    /**
     * The port's hardware counters as rxe names them ({@code rxe_hw_counters.c}, shown by {@code rdma statistic}),
     * then this engine's own, prefixed {@code dmaplane_}.
     */
    java.util.SequencedMap<String, Long> counters() {
        var m = new java.util.LinkedHashMap<String, Long>();
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
        m.put("dmaplane_resent_from_middle", resentFromMiddle);
        m.put("dmaplane_bursts_cut_through", burstsCutThrough);
        m.put("dmaplane_bursts_stored", burstsStored.get());
        m.put("dmaplane_passes_inline", inlinePasses);
        m.put("dmaplane_passes_worker", workerPasses);
        m.put("dmaplane_errors", errors);
        return m;
    }

    // ---- control (called from provider hooks) ----

    QpCtx ctx(HwQp qp) {
        return qps.computeIfAbsent(qp.qpNum(), n -> new QpCtx(qp));
    }

    void destroy(HwQp qp) {
        lock.lock();
        try {
            qps.remove(qp.qpNum());
        } finally {
            lock.unlock();
        }
    }

    void modify(HwQp qp, dev.dmaplane.rdma.verbs.QpAttr attr, QpState from, QpState to) {
        lock.lock();
        try {
            QpCtx c = ctx(qp);
            if (to == QpState.RESET || to == QpState.ERR) {
                c.reset();
            }
            if (attr.has(dev.dmaplane.rdma.verbs.QpAttrMask.RQ_PSN)) {
                c.epsn = attr.rqPsn() & Packet.PSN_MASK;
            }
            if (attr.has(dev.dmaplane.rdma.verbs.QpAttrMask.SQ_PSN)) {
                c.npsn = attr.sqPsn() & Packet.PSN_MASK;
            }
        } finally {
            lock.unlock();
        }
        doorbell(qp);
    }

    /**
     * The send queue has work: the QP is queued for the requester and, if the engine is idle, the ringing thread
     * runs it now ({@code rxe_run_task}); otherwise the thread running it, or the worker, picks it up.
     */
    void doorbell(HwQp qp) {
        QpCtx c = ctx(qp);
        if (c.queued.compareAndSet(false, true)) {
            ready.add(c);
        }
        if (lock.isHeldByCurrentThread()) {
            return; // the pass this thread is in will see it
        }
        if (lock.tryLock()) {
            try {
                if (running) {
                    inlinePasses++;
                    pass();
                }
            } finally {
                lock.unlock();
            }
        } else {
            wakeWorker();
        }
    }

    // ---- the worker ----

    @Override
    public void run() {
        while (running) {
            lock.lock();
            try {
                workerPasses++;
                pass();
            } finally {
                lock.unlock();
            }
            if (inbox.isEmpty() && ready.isEmpty() && running) {
                LockSupport.parkNanos(this, Math.max(1, workerWake - System.nanoTime()));
            }
        }
    }

    /**
     * Runs everything pending (packets, doorbells, due timers) until nothing is, handing what it sends to the
     * fabric; the caller holds the lock. Wakes the worker if a timer is due before it planned to wake.
     */
    private void pass() {
        try {
            passRounds();
        } finally {
            clearLeases(); // kept leases never outlive the pass: the next may run on another thread
        }
    }

    private void passRounds() {
        boolean more = true;
        while (more && running) {
            more = drainInbox();
            QpCtx c;
            while ((c = ready.poll()) != null) {
                more = true;
                c.queued.set(false);
                if (qps.get(c.qp.qpNum()) == c) {
                    try {
                        requester(c);
                    } catch (RuntimeException e) {
                        failed(e);
                    }
                }
            }
            flushTx();
            clearLeases();
            if (!more) {
                long next;
                try {
                    next = timers();
                } catch (RuntimeException e) {
                    failed(e);
                    next = System.nanoTime() + MIN_TIMEOUT_NS;
                }
                more = flushTx() || !inbox.isEmpty() || !ready.isEmpty();
                if (Thread.currentThread() == thread) {
                    workerWake = next != 0 ? next : System.nanoTime() + IDLE_WAKE_NS;
                } else if (next != 0 && next - workerWake < 0) {
                    workerWake = next; // a timer earlier than the worker planned to wake
                    wakeWorkerThread();
                }
            }
        }
    }

    /** Closes the leases kept for this round: a deregistration waits for them, so they are never kept long. */
    private void clearLeases() {
        remoteLeases.clear();
        localLeases.clear();
    }

    /** A remote access's lease, kept from an earlier access of this round or taken now (and kept if stable). */
    private LeaseCache.Held remote(HwQp qp, int rkey, long va, long len, int access) {
        LeaseCache.Held h = remoteLeases.find(qp, rkey, access, va, len);
        return h != null ? h : remoteLeases.keep(handle.memory().remote(qp, rkey, va, len, access), qp, rkey, access, va,
                len);
    }

    /** A local read's lease, kept from an earlier access of this round or taken now (and kept if stable). */
    private LeaseCache.Held local(HwQp qp, dev.dmaplane.rdma.verbs.Sge sge) {
        LeaseCache.Held h = localLeases.find(qp.pd(), sge.lkey(), 0, sge.addr(), sge.length());
        return h != null ? h : localLeases.keep(handle.memory().local(qp.pd(), sge.lkey(), sge.addr(), sge.length(), 0),
                qp.pd(), sge.lkey(), 0, sge.addr(), sge.length());
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
            flushAcks();
        }
        return any;
    }

    private void receiveOne(Packet p) {
        pktsRecv.setRelease(pktsRecv.getPlain() + p.count());
        try {
            dispatch(p);
        } catch (RuntimeException e) {
            failed(e); // a malformed or racing packet must not kill the HCA
        }
    }

    private void failed(RuntimeException e) {
        errors++;
        lastError = e;
    }

    /** Hands the packets sent so far to the fabric; whether there were any. */
    private boolean flushTx() {
        if (tx.isEmpty()) {
            return false;
        }
        ArrayList<Packet> out = tx;
        tx = txSpare;
        txSpare = out;
        try {
            fabric.send(out);
        } finally {
            out.clear();
        }
        return true;
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
                    retransmit(c, -1);
                } else if (c.retryLeft-- > 0) {
                    retries++;
                    retransmit(c, -1);
                } else {
                    retryExceeded++;
                    finish(c, WcStatus.RETRY_EXC_ERR);
                    requester(c);
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
    private static void dropFlushed(QpCtx c) {
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

    // ---- requester ----

    /**
     * Starts every work request the window allows: RC messages are pipelined up to {@link #MAX_INFLIGHT} messages and
     * {@code max_rd_atomic} reads and atomics; a FENCE waits for the reads and atomics before it, a local operation
     * or a request that failed locally waits until everything before it completed (completions are in order).
     */
    private void requester(QpCtx c) {
        HwQp qp = c.qp;
        MemoryAccess mem = handle.memory();
        dropFlushed(c);
        while (true) {
            SendWqe w = c.held != null ? c.held : qp.nextSend();
            if (w == null) {
                return;
            }
            c.held = null;
            if (c.heldStatus != null || w.opcode().isLocal()) {
                if (!c.inflight.isEmpty()) {
                    c.held = w;
                    return;
                }
                if (c.heldStatus == null) {
                    clearLeases(); // a bind or an invalidation may need what the kept leases hold
                }
                WcStatus st = c.heldStatus != null ? c.heldStatus : mem.executeLocal(qp, w);
                c.heldStatus = null;
                qp.completeSend(w, st);
                continue;
            }
            if (qp.type() == QpType.UD) {
                WcStatus st;
                try {
                    st = udSend(c, w);
                } catch (AccessFault f) {
                    st = f.status();
                }
                qp.completeSend(w, st);
                continue;
            }
            boolean rdAtomic = isReadOrAtomic(w);
            int maxRd = Math.max(1, qp.attr().maxRdAtomic());
            if (c.inflight.size() >= MAX_INFLIGHT || (rdAtomic && c.readsInFlight >= maxRd)
                    || (w.fenced() && c.readsInFlight > 0)) {
                c.held = w;
                return;
            }
            if (qp.type() == QpType.UC) {
                WcStatus st = WcStatus.SUCCESS;
                try {
                    start(c, w);
                    finish(c, WcStatus.SUCCESS); // unacknowledged: done once on the wire
                } catch (AccessFault f) {
                    st = f.status();
                    qp.completeSend(w, st);
                }
                continue;
            }
            try {
                start(c, w);
            } catch (AccessFault f) {
                c.held = w;
                c.heldStatus = f.status();
            }
        }
    }

    private static boolean isAtomic(SendWqe w) {
        return w.wr() instanceof SendWr.AtomicCmpAndSwp || w.wr() instanceof SendWr.AtomicFetchAndAdd;
    }

    private static boolean isReadOrAtomic(SendWqe w) {
        return w.wr() instanceof SendWr.RdmaRead || w.wr() instanceof SendWr.AtomicCmpAndSwp
                || w.wr() instanceof SendWr.AtomicFetchAndAdd;
    }

    private byte[] payload(HwQp qp, SendWqe w) {
        if (w.inlineData() != null) {
            return w.inlineData().toArray(ValueLayout.JAVA_BYTE);
        }
        if (w.length() > Integer.MAX_VALUE - 8) {
            throw new AccessFault(WcStatus.LOC_LEN_ERR, dev.dmaplane.errno.Errno.EINVAL, "message too long");
        }
        byte[] b = new byte[(int) w.length()];
        List<dev.dmaplane.rdma.verbs.Sge> sges = w.wr().sgList();
        if (sges.size() == 1 && b.length > 0) {
            try (LeaseCache.Held h = local(qp, sges.getFirst())) {
                h.lease().read(h.offset(), MemorySegment.ofArray(b));
            } catch (DmaFaultException e) {
                throw new AccessFault(WcStatus.LOC_PROT_ERR, dev.dmaplane.errno.Errno.EFAULT,
                        "IOMMU refused the read of " + sges.getFirst(), e);
            }
            return b;
        }
        handle.memory().gather(qp, sges, MemorySegment.ofArray(b));
        return b;
    }

    /** Whether {@code w}'s payload goes cut-through (see {@link #CUT_THROUGH_MIN}). */
    private static boolean cutThrough(SendWqe w) {
        return w.inlineData() == null && w.length() >= CUT_THROUGH_MIN && w.wr().sgList().size() == 1;
    }

    private WcStatus udSend(QpCtx c, SendWqe w) {
        HwQp qp = c.qp;
        SendWr wr = w.wr();
        dev.dmaplane.rdma.verbs.UdDestination ud;
        int imm = 0;
        Op op;
        if (wr instanceof SendWr.Send s) {
            ud = s.ud();
            op = Op.UD_SEND;
        } else if (wr instanceof SendWr.SendWithImm s) {
            ud = s.ud();
            imm = s.immData();
            op = Op.UD_SEND_IMM;
        } else {
            return WcStatus.LOC_QP_OP_ERR;
        }
        var a = qp.attr();
        int mtu = a.pathMtu() != null ? a.pathMtu().bytes() : 1024;
        if (w.length() > Math.min(mtu, 1024)) {
            return WcStatus.LOC_LEN_ERR; // a UD message is one packet
        }
        byte[] data = payload(qp, w);
        int qkey = ud.remoteQkey() < 0 ? a.qkey() : ud.remoteQkey();
        Gid dgid = w.ah().attr().grh().dgid();
        send(new Packet(gid, dgid, qp.qpNum(), ud.remoteQpn(), op, true, true, c.npsn, 1, false, 0, 0, 0, imm, 0, 0,
                0, 0, 0, qkey, Packet.Payload.Bytes.of(data), w.solicited()));
        c.npsn = Packet.psnAdd(c.npsn, 1);
        return WcStatus.SUCCESS;
    }

    /** Builds the message of {@code w} (gathering a short payload), gives it its PSNs and sends it. */
    private void start(QpCtx c, SendWqe w) {
        HwQp qp = c.qp;
        var a = qp.attr();
        Msg m = new Msg(w);
        m.mtu = a.pathMtu().bytes();
        long len = w.length();
        int pkts = (int) Math.max(1, (len + m.mtu - 1) / m.mtu);
        boolean cut = false;
        switch (w.wr()) {
            case SendWr.RdmaRead r -> m.readBuf = new byte[(int) len];
            case SendWr.AtomicCmpAndSwp s -> pkts = 1;
            case SendWr.AtomicFetchAndAdd s -> pkts = 1;
            default -> {
                cut = cutThrough(w);
                if (!cut) {
                    m.data = payload(qp, w);
                }
            }
        }
        m.firstPsn = c.npsn;
        m.lastPsn = Packet.psnAdd(c.npsn, pkts - 1);
        m.ackedThrough = Packet.psnAdd(c.npsn, -1);
        if (cut) { // sent before it is in flight: a refused lease fails the request before it takes PSNs
            try {
                transmit(c, m);
            } catch (DmaFaultException e) {
                throw new AccessFault(WcStatus.LOC_PROT_ERR, dev.dmaplane.errno.Errno.EFAULT,
                        "IOMMU refused the read of the payload of " + w, e);
            }
        }
        c.npsn = Packet.psnAdd(c.npsn, pkts);
        if (c.inflight.isEmpty()) {
            c.retryLeft = a.retryCnt();
            c.rnrLeft = a.rnrRetry();
            c.deadline = System.nanoTime() + timeoutNs(a.timeout());
        }
        if (isReadOrAtomic(w)) {
            c.readsInFlight++;
        }
        c.inflight.addLast(m);
        if (!cut) {
            transmit(c, m);
        }
    }

    /**
     * Go-back-N, as an RC requester retransmits: every message in flight from {@code fromPsn}, or from the first
     * PSN not acknowledged yet when {@code fromPsn} is -1 (a timeout). A SEND or WRITE resumes at that packet of its
     * message, a READ asks for the rest of its data from that response on, an atomic is sent again whole.
     */
    private void retransmit(QpCtx c, int fromPsn) {
        boolean firstMsg = true;
        for (Msg m : c.inflight) {
            int k = 0;
            if (firstMsg && !isAtomic(m.w)) {
                int from = fromPsn >= 0 ? fromPsn : Packet.psnAdd(m.ackedThrough, 1);
                int d = Packet.psnDiff(from, m.firstPsn);
                if (d > 0 && Packet.psnDiff(from, m.lastPsn) <= 0) {
                    k = d;
                }
            }
            firstMsg = false;
            try {
                transmit(c, m, k);
            } catch (AccessFault | DmaFaultException e) {
                break; // the region went away under a message in flight: nothing more is sent; the timer ends it
            }
        }
        c.deadline = System.nanoTime() + timeoutNs(c.qp.attr().timeout());
    }

    private void transmit(QpCtx c, Msg m) {
        transmit(c, m, 0);
    }

    /**
     * Sends the packets of {@code m} from its {@code fromPkt}-th (SEND and WRITE; requests without payload are
     * one packet): trains, or single packets while the fabric loses some.
     */
    private void transmit(QpCtx c, Msg m, int fromPkt) {
        HwQp qp = c.qp;
        SendWqe w = m.w;
        var a = qp.attr();
        Gid dgid = a.ahAttr().grh().dgid();
        int dqpn = a.destQpNum();
        int me = qp.qpNum();
        int psn = m.firstPsn;
        switch (w.wr()) {
            case SendWr.RdmaRead r -> { // from its fromPkt-th response on: the rest of the read
                long skip = Math.min(w.length(), (long) fromPkt * m.mtu);
                if (fromPkt > 0) {
                    resentFromMiddle++;
                }
                send(Packet.control(gid, dgid, me, dqpn, Op.READ_REQ, Packet.psnAdd(psn, fromPkt), true,
                        r.remoteAddr() + skip, r.rkey(), w.length() - skip, 0, 0, 0, 0, 0));
            }
            case SendWr.AtomicCmpAndSwp s -> send(Packet.control(gid, dgid, me, dqpn, Op.CMP_SWAP, psn, true,
                    s.remoteAddr(), s.rkey(), 8, s.swap(), s.compare(), 0, 0, 0));
            case SendWr.AtomicFetchAndAdd s -> send(Packet.control(gid, dgid, me, dqpn, Op.FETCH_ADD, psn, true,
                    s.remoteAddr(), s.rkey(), 8, s.add(), 0, 0, 0, 0));
            default -> {
                Op op;
                long va = 0;
                int rkey = 0;
                int imm = 0;
                switch (w.wr()) {
                    case SendWr.SendWithImm s -> {
                        op = Op.SEND_IMM;
                        imm = s.immData();
                    }
                    case SendWr.SendWithInv s -> {
                        op = Op.SEND_INV;
                        imm = s.invalidateRkey();
                    }
                    case SendWr.RdmaWrite s -> {
                        op = Op.WRITE;
                        va = s.remoteAddr();
                        rkey = s.rkey();
                    }
                    case SendWr.RdmaWriteWithImm s -> {
                        op = Op.WRITE_IMM;
                        va = s.remoteAddr();
                        rkey = s.rkey();
                        imm = s.immData();
                    }
                    default -> op = Op.SEND;
                }
                if (m.data != null) {
                    packets(c, m, op, va, rkey, imm, dgid, dqpn, m.segment(), fromPkt);
                    return;
                }
                // cut-through: the packets carry a range of the lease, which stays open until the fabric took them
                flushTx();
                dev.dmaplane.rdma.verbs.Sge sge = w.wr().sgList().getFirst();
                try (DmaLease l = handle.memory().local(qp.pd(), sge.lkey(), sge.addr(), sge.length(), 0)) {
                    Packet.Payload.Span span = new Packet.Payload.Span(l, 0, sge.length());
                    // an on-demand or dma-buf lease is not held while the responder takes its own: gathered first
                    packets(c, m, op, va, rkey, imm, dgid, dqpn, l.stable() ? span : span.materialize(), fromPkt);
                    flushTx();
                }
            }
        }
    }

    /** The packets of a SEND or WRITE message with {@code payload}: one train, or single packets. */
    private void packets(QpCtx c, Msg m, Op op, long va, int rkey, int imm, Gid dgid, int dqpn, Packet.Payload payload,
                         int fromPkt) {
        long len = payload.length();
        int n = (int) Math.max(1, (len + m.mtu - 1) / m.mtu);
        int per = fabric.perPacket() ? 1 : n;
        int me = c.qp.qpNum();
        for (int i = fromPkt; i < n; i += per) {
            int k = Math.min(per, n - i);
            long from = (long) i * m.mtu;
            long to = Math.min(len, from + (long) k * m.mtu);
            boolean last = i + k == n;
            boolean ackReq = last || (per == 1 && (i % ACK_EVERY) == ACK_EVERY - 1);
            Packet.Payload part = (k == n) ? payload : payload.slice(from, to - from);
            if (i == fromPkt && fromPkt > 0) {
                resentFromMiddle++;
            }
            send(new Packet(gid, dgid, me, dqpn, op, i == 0, last, Packet.psnAdd(m.firstPsn, i), k, ackReq, va,
                    rkey, len, imm, 0, 0, 0, 0, 0, 0, part, last && m.w.solicited()));
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

    /** The responder made progress: restart the transport timer and the retry count (IBTA 9.7.6.1.2). */
    private void progress(QpCtx c) {
        var a = c.qp.attr();
        c.retryLeft = a.retryCnt();
        c.rnrLeft = a.rnrRetry();
        if (!c.rnrWait) {
            c.deadline = System.nanoTime() + timeoutNs(a.timeout());
        }
    }

    /** Completes the oldest message in flight; on success, what is left in flight made progress. */
    private void finish(QpCtx c, WcStatus status) {
        if (finishOne(c, status) && !c.inflight.isEmpty()) {
            progress(c);
        }
    }

    /** Completes the oldest message in flight; whether it succeeded (and anything was in flight). */
    private boolean finishOne(QpCtx c, WcStatus status) {
        Msg m = c.inflight.pollFirst();
        if (m == null) {
            return false;
        }
        if (isReadOrAtomic(m.w)) {
            c.readsInFlight--;
        }
        c.rnrWait = false;
        if (!m.w.isCompleted()) {
            c.qp.completeSend(m.w, status);
        }
        if (status != WcStatus.SUCCESS) {
            c.inflight.clear(); // flushed by the core with the QP's move to ERR
            c.readsInFlight = 0;
            c.held = null;
            c.heldStatus = null;
            return false;
        }
        return true;
    }

    /** Completes the sends and writes before {@code psn} (a later response acknowledges them implicitly). */
    private void implicitAck(QpCtx c, int psn) {
        Msg m;
        boolean any = false;
        while ((m = c.inflight.peekFirst()) != null && m.readBuf == null && !isAtomic(m.w)
                && Packet.psnDiff(m.lastPsn, psn) < 0) {
            any |= finishOne(c, WcStatus.SUCCESS);
        }
        if (any && !c.inflight.isEmpty()) {
            progress(c); // once for the lot
        }
    }

    /** The completer: ACK/NAK, read responses and atomic acknowledgements for the messages in flight. */
    private void completer(QpCtx c, Packet p) {
        dropFlushed(c);
        if (c.inflight.isEmpty()) {
            return;
        }
        switch (p.op()) {
            case READ_RESP -> {
                implicitAck(c, p.psn());
                Msg m = c.inflight.peekFirst();
                if (m == null || m.readBuf == null) {
                    return;
                }
                int expect = Packet.psnAdd(m.ackedThrough, 1); // the next response this read waits for
                if (Packet.psnDiff(p.lastPsn(), m.lastPsn) > 0 || Packet.psnDiff(p.lastPsn(), expect) < 0) {
                    return; // another request's, or seen already
                }
                int gap = Packet.psnDiff(p.psn(), expect);
                if (gap > 0) {
                    // a response went missing: reissue the RDMA READ for the remaining data, from the PSN missing
                    // (IBTA RC requester behaviour), once per gap
                    if (m.rerequested != expect) {
                        m.rerequested = expect;
                        retries++;
                        retransmit(c, expect);
                    }
                    return;
                }
                long at = (long) Packet.psnDiff(expect, m.firstPsn) * m.mtu;
                long from = (long) -gap * m.mtu; // the part of a train seen already
                long n = Math.min(p.payload().length() - from, m.readBuf.length - at);
                if (n > 0) {
                    p.payload().copyTo(from, MemorySegment.ofArray(m.readBuf).asSlice(at, n));
                }
                m.ackedThrough = p.lastPsn();
                progress(c);
                if (p.lastPsn() == m.lastPsn) {
                    WcStatus st = WcStatus.SUCCESS;
                    try {
                        handle.memory().scatter(c.qp, m.w.wr().sgList(), MemorySegment.ofArray(m.readBuf));
                    } catch (AccessFault f) {
                        st = f.status();
                    }
                    finish(c, st);
                }
            }
            case ATOMIC_ACK -> {
                implicitAck(c, p.psn());
                Msg m = c.inflight.peekFirst();
                if (m == null || p.psn() != m.firstPsn || m.readBuf != null || m.data != null) {
                    return;
                }
                byte[] out = new byte[8];
                MemorySegment.ofArray(out).set(ValueLayout.JAVA_LONG_UNALIGNED, 0, p.orig());
                WcStatus st = WcStatus.SUCCESS;
                try {
                    handle.memory().scatter(c.qp, m.w.wr().sgList(), MemorySegment.ofArray(out));
                } catch (AccessFault f) {
                    st = f.status();
                }
                finish(c, st);
            }
            case ACK -> {
                int syn = p.syndrome();
                if (syn == Packet.AETH_ACK) {
                    implicitAck(c, Packet.psnAdd(p.psn(), 1));
                    Msg m = c.inflight.peekFirst();
                    if (m != null && Packet.psnDiff(p.psn(), m.firstPsn) >= 0) {
                        m.ackedThrough = p.psn(); // a coalesced ACK inside a long message
                        progress(c);
                    }
                    return;
                }
                implicitAck(c, p.psn()); // a NAK acknowledges everything before its PSN
                Msg m = c.inflight.peekFirst();
                if (m == null) {
                    return;
                }
                if ((syn & 0x60) == Packet.AETH_RNR) {
                    rnrNaksRcvd++;
                    if (c.rnrWait) {
                        return;
                    }
                    if (c.rnrLeft != 7 && c.rnrLeft-- <= 0) {
                        rnrRetryExceeded++;
                        finish(c, WcStatus.RNR_RETRY_EXC_ERR);
                    } else {
                        c.rnrWait = true;
                        c.deadline = System.nanoTime() + rnrNs(syn & 31);
                    }
                } else {
                    switch (syn) {
                        case Packet.AETH_NAK_PSN_SEQ -> {
                            seqNaksRcvd++;
                            if (!c.rnrWait) {
                                retries++;
                                retransmit(c, p.psn()); // from the PSN the responder expects
                            }
                        }
                        case Packet.AETH_NAK_INV_REQ -> finish(c, WcStatus.REM_INV_REQ_ERR);
                        case Packet.AETH_NAK_REM_ACCESS -> finish(c, WcStatus.REM_ACCESS_ERR);
                        default -> finish(c, WcStatus.REM_OP_ERR);
                    }
                }
            }
            default -> {
            }
        }
    }

    // ---- responder ----

    private void dispatch(Packet p) {
        RdmaDeviceHandle h = handle;
        HwQp qp = h.qp(p.destQpn()).orElse(null);
        if (qp == null) {
            return; // unknown QPN: dropped as rxe does
        }
        QpCtx c = qps.get(qp.qpNum());
        if (c == null) {
            return;
        }
        QpState s = qp.state();
        if (p.op().isResponse()) {
            if (qp.type() == QpType.RC && (s == QpState.RTS || s == QpState.SQD)
                    && p.srcQpn() == qp.attr().destQpNum()) {
                completer(c, p);
                requester(c);
            }
            return;
        }
        if (s != QpState.RTR && s != QpState.RTS && s != QpState.SQD && s != QpState.SQE) {
            return;
        }
        if (p.op() == Op.UD_SEND || p.op() == Op.UD_SEND_IMM) {
            udReceive(qp, p);
            return;
        }
        if ((qp.type() != QpType.RC && qp.type() != QpType.UC) || p.srcQpn() != qp.attr().destQpNum()) {
            return;
        }
        int d = Packet.psnDiff(p.psn(), c.epsn);
        if (d < 0 && d + p.count() > 0) { // a train whose first packets were taken already
            p = p.dropFront(-d, qp.attr().pathMtu().bytes());
            d = 0;
        }
        if (qp.type() == QpType.UC) {
            // UC: nothing is acknowledged or retransmitted; a gap drops the message in progress and the next
            // message's first packet resynchronises (IBTA 9.7.7.1)
            if (d != 0) {
                if (!p.first()) {
                    return;
                }
                c.resetResponder();
                c.epsn = p.psn();
            }
            if (p.op() == Op.READ_REQ || p.op() == Op.CMP_SWAP || p.op() == Op.FETCH_ADD) {
                return;
            }
            d = 0;
        }
        if (d > 0) {
            if (!c.nakSent) {
                c.nakSent = true;
                outOfSeqNaksSent++;
                ack(c, p, Packet.AETH_NAK_PSN_SEQ, c.epsn);
            }
            return;
        }
        if (d < 0) {
            duplicate(c, p);
            return;
        }
        c.nakSent = false;
        if ((p.op() == Op.READ_REQ || p.op() == Op.CMP_SWAP || p.op() == Op.FETCH_ADD)
                && qp.attr().maxDestRdAtomic() == 0) {
            // no responder resources for reads and atomics (max_dest_rd_atomic 0): rxe's check_resource
            // RESPST_ERR_TOO_MANY_RDMA_ATM_REQ, an Invalid Request NAK
            nakFatal(c, p, Packet.AETH_NAK_INV_REQ);
            return;
        }
        switch (p.op()) {
            case SEND, SEND_IMM, SEND_INV -> recvSend(c, p);
            case WRITE, WRITE_IMM -> recvWrite(c, p);
            case READ_REQ -> recvRead(c, p);
            case CMP_SWAP, FETCH_ADD -> recvAtomic(c, p);
            default -> {
            }
        }
    }

    private void send(Packet p) {
        pktsSent.setRelease(pktsSent.getPlain() + p.count()); // only the thread running the engine writes it
        tx.add(p);
        if (tx.size() >= BURST) {
            flushTx();
        }
    }

    /**
     * Acknowledges {@code psn}: a plain ACK waits until the end of the burst being received and then covers every
     * message of the QP the burst completed (coalescing); a NAK, and any other response, first sends the ACK
     * waiting, so that responses leave in PSN order.
     */
    private void ack(QpCtx c, Packet req, int syndrome, int psn) {
        if (c.qp.type() == QpType.UC) {
            return; // UC has no acknowledgements
        }
        if (syndrome == Packet.AETH_ACK) {
            c.ackPsn = psn;
            c.ackDgid = req.sgid();
            c.ackDqpn = req.srcQpn();
            if (!c.ackWaiting) {
                c.ackWaiting = true;
                acks.add(c);
            }
            return;
        }
        flushAck(c);
        if ((syndrome & 0x60) == Packet.AETH_RNR) {
            rnrNaksSent++;
        }
        send(Packet.control(gid, req.sgid(), c.qp.qpNum(), req.srcQpn(), Op.ACK, psn, false, 0, 0, 0, 0, 0, syndrome,
                c.msn, 0));
    }

    /** Sends the coalesced ACK of {@code c}, if one waits. */
    private void flushAck(QpCtx c) {
        if (c.ackWaiting) {
            c.ackWaiting = false;
            send(Packet.control(gid, c.ackDgid, c.qp.qpNum(), c.ackDqpn, Op.ACK, c.ackPsn, false, 0, 0, 0, 0, 0,
                    Packet.AETH_ACK, c.msn, 0));
        }
    }

    /** End of a received burst: every waiting ACK goes out. */
    private void flushAcks() {
        for (int i = 0; i < acks.size(); i++) {
            flushAck(acks.get(i));
        }
        acks.clear();
    }

    /** A class B/C responder error: NAK and the responder's QP goes to ERR. */
    private void nakFatal(QpCtx c, Packet req, int syndrome) {
        c.resetResponder();
        if (c.qp.type() == QpType.UC) {
            return; // UC: the message is dropped, the QP stays up
        }
        c.qp.enterError();
        ack(c, req, syndrome, req.psn());
    }

    private void duplicate(QpCtx c, Packet p) {
        duplicates++;
        switch (p.op()) {
            case READ_REQ -> recvReadAt(c, p, false);
            case CMP_SWAP, FETCH_ADD -> {
                Long orig = c.atomicResults.get(p.psn());
                if (orig != null) {
                    flushAck(c);
                    send(Packet.control(gid, p.sgid(), c.qp.qpNum(), p.srcQpn(), Op.ATOMIC_ACK, p.psn(), false, 0, 0,
                            0, 0, 0, Packet.AETH_ACK, c.msn, orig));
                }
            }
            default -> {
                if (p.last()) {
                    ack(c, p, Packet.AETH_ACK, Packet.psnAdd(c.epsn, -1));
                    flushAck(c); // a duplicate is answered at once: the requester is retrying
                }
            }
        }
    }

    private static int nakFor(AccessFault f) {
        return switch (f.status()) {
            case REM_INV_REQ_ERR -> Packet.AETH_NAK_INV_REQ;
            case REM_ACCESS_ERR -> Packet.AETH_NAK_REM_ACCESS;
            default -> Packet.AETH_NAK_REM_OP;
        };
    }

    private void recvSend(QpCtx c, Packet p) {
        HwQp qp = c.qp;
        if (p.first()) {
            RecvWqe r = qp.takeRecv();
            if (r == null) {
                c.nakSent = true;
                ack(c, p, Packet.AETH_RNR | (qp.attr().minRnrTimer() & 31), p.psn());
                return;
            }
            c.recv = r;
            c.recvBuf = new byte[(int) Math.min(Integer.MAX_VALUE - 8, Math.max(p.dmaLen(), 0))];
            c.recvOff = 0;
        }
        if (c.recv == null) {
            return;
        }
        Packet.Payload pl = p.payload();
        long n = pl.length();
        if (c.recvOff + n > c.recv.length() || c.recvOff + n > c.recvBuf.length) {
            RecvWqe r = c.recv;
            c.recv = null;
            ack(c, p, Packet.AETH_NAK_INV_REQ, p.psn());
            qp.completeRecv(r, RecvResult.error(WcStatus.LOC_LEN_ERR));
            return;
        }
        if (n > 0) {
            pl.copyTo(0, MemorySegment.ofArray(c.recvBuf).asSlice(c.recvOff, n));
        }
        c.recvOff += n;
        c.epsn = Packet.psnAdd(c.epsn, p.count());
        if (!p.last()) {
            if (p.ackReq()) {
                ack(c, p, Packet.AETH_ACK, p.lastPsn());
            }
            return;
        }
        RecvWqe r = c.recv;
        c.recv = null;
        long len = c.recvOff;
        if (p.op() == Op.SEND_INV) {
            clearLeases(); // the invalidation may need what the kept leases hold
        }
        if (p.op() == Op.SEND_INV && !handle.memory().invalidateRemote(qp, p.imm())) {
            ack(c, p, Packet.AETH_NAK_INV_REQ, p.psn());
            qp.completeRecv(r, RecvResult.error(WcStatus.REM_INV_REQ_ERR));
            return;
        }
        try {
            handle.memory().scatter(qp, r.wr().sgList(), MemorySegment.ofArray(c.recvBuf).asSlice(0, len));
        } catch (AccessFault f) {
            ack(c, p, f.status() == WcStatus.LOC_LEN_ERR ? Packet.AETH_NAK_INV_REQ : Packet.AETH_NAK_REM_OP, p.psn());
            qp.completeRecv(r, RecvResult.error(f.status()));
            return;
        } catch (DmaFaultException e) {
            ack(c, p, Packet.AETH_NAK_REM_OP, p.psn());
            qp.completeRecv(r, RecvResult.error(WcStatus.LOC_PROT_ERR));
            return;
        }
        c.recvBuf = null;
        c.msn++;
        ack(c, p, Packet.AETH_ACK, p.lastPsn());
        int src = p.srcQpn();
        boolean sol = p.se();
        qp.completeRecv(r, switch (p.op()) {
            case SEND_IMM -> RecvResult.sendWithImm(len, src, p.imm(), sol);
            case SEND_INV -> RecvResult.sendWithInv(len, src, p.imm(), sol);
            default -> RecvResult.send(len, src, sol);
        });
    }

    private void recvWrite(QpCtx c, Packet p) {
        HwQp qp = c.qp;
        MemoryAccess mem = handle.memory();
        Packet.Payload pl = p.payload();
        long n = pl.length();
        if (p.first()) {
            if (p.op() == Op.WRITE_IMM) {
                RecvWqe r = qp.takeRecv();
                if (r == null) {
                    c.nakSent = true;
                    ack(c, p, Packet.AETH_RNR | (qp.attr().minRnrTimer() & 31), p.psn());
                    return;
                }
                c.recv = r;
            }
            c.wva = p.va();
            c.wrkey = p.rkey();
            c.woff = 0;
            try (LeaseCache.Held l = remote(qp, p.rkey(), p.va(), p.dmaLen(), Access.REMOTE_WRITE)) {
                if (n > 0) {
                    pl.writeTo(0, l.lease(), l.offset(), n);
                }
            } catch (AccessFault f) {
                c.recv = null;
                nakFatal(c, p, nakFor(f));
                return;
            } catch (DmaFaultException e) {
                c.recv = null;
                nakFatal(c, p, Packet.AETH_NAK_REM_OP);
                return;
            }
        } else {
            try (LeaseCache.Held l = remote(qp, c.wrkey, c.wva + c.woff, n, Access.REMOTE_WRITE)) {
                pl.writeTo(0, l.lease(), l.offset(), n);
            } catch (AccessFault f) {
                c.recv = null;
                nakFatal(c, p, nakFor(f));
                return;
            } catch (DmaFaultException e) {
                c.recv = null;
                nakFatal(c, p, Packet.AETH_NAK_REM_OP);
                return;
            }
        }
        c.woff += n;
        c.epsn = Packet.psnAdd(c.epsn, p.count());
        if (!p.last()) {
            if (p.ackReq()) {
                ack(c, p, Packet.AETH_ACK, p.lastPsn());
            }
            return;
        }
        c.msn++;
        ack(c, p, Packet.AETH_ACK, p.lastPsn());
        if (p.op() == Op.WRITE_IMM && c.recv != null) {
            RecvWqe r = c.recv;
            c.recv = null;
            qp.completeRecv(r, RecvResult.writeWithImm(c.woff, p.srcQpn(), p.imm(), p.se()));
        }
    }

    private void recvRead(QpCtx c, Packet p) {
        recvReadAt(c, p, true);
    }

    private void recvReadAt(QpCtx c, Packet p, boolean fresh) {
        HwQp qp = c.qp;
        int mtu = qp.attr().pathMtu().bytes();
        long len = p.dmaLen();
        int pkts = (int) Math.max(1, (len + mtu - 1) / mtu);
        flushAck(c);
        flushTx(); // the response carries a range of the lease: it leaves before the lease closes
        try (LeaseCache.Held h = remote(qp, p.rkey(), p.va(), len, Access.REMOTE_READ)) {
            DmaLease l = h.lease();
            Packet.Payload all = new Packet.Payload.Span(l, h.offset(), len);
            if (!l.stable()) {
                all = all.materialize(); // see transmit: only stable leases stay open across the delivery
            }
            int per = fabric.perPacket() ? 1 : pkts;
            for (int i = 0; i < pkts; i += per) {
                int k = Math.min(per, pkts - i);
                long from = (long) i * mtu;
                long to = Math.min(len, from + (long) k * mtu);
                send(new Packet(gid, p.sgid(), qp.qpNum(), p.srcQpn(), Op.READ_RESP, i == 0, i + k == pkts,
                        Packet.psnAdd(p.psn(), i), k, false, 0, 0, 0, 0, 0, 0, Packet.AETH_ACK, c.msn, 0, 0,
                        k == pkts ? all : all.slice(from, to - from), false));
            }
            flushTx();
        } catch (AccessFault f) {
            if (fresh) {
                nakFatal(c, p, nakFor(f));
            }
            return;
        } catch (DmaFaultException e) {
            if (fresh) {
                nakFatal(c, p, Packet.AETH_NAK_REM_OP);
            }
            return;
        }
        if (fresh) {
            c.epsn = Packet.psnAdd(c.epsn, pkts);
            c.msn++;
        }
    }

    private void recvAtomic(QpCtx c, Packet p) {
        HwQp qp = c.qp;
        if ((p.va() & 7) != 0) {
            nakFatal(c, p, Packet.AETH_NAK_INV_REQ);
            return;
        }
        long old;
        try (LeaseCache.Held h = remote(qp, p.rkey(), p.va(), 8, Access.REMOTE_ATOMIC)) {
            old = p.op() == Op.CMP_SWAP ? h.lease().compareAndSwap(h.offset(), p.compare(), p.swapAdd())
                    : h.lease().fetchAndAdd(h.offset(), p.swapAdd());
        } catch (AccessFault f) {
            nakFatal(c, p, nakFor(f));
            return;
        } catch (DmaFaultException e) {
            nakFatal(c, p, Packet.AETH_NAK_REM_OP);
            return;
        }
        c.atomicResults.put(p.psn(), old);
        c.epsn = Packet.psnAdd(c.epsn, 1);
        c.msn++;
        flushAck(c);
        send(Packet.control(gid, p.sgid(), qp.qpNum(), p.srcQpn(), Op.ATOMIC_ACK, p.psn(), false, 0, 0, 0, 0, 0,
                Packet.AETH_ACK, c.msn, old));
    }

    private void udReceive(HwQp qp, Packet p) {
        if (qp.type() != QpType.UD || p.qkey() != qp.attr().qkey()) {
            return; // wrong Q_Key: silently dropped (IBTA 10.2.4)
        }
        RecvWqe r = qp.takeRecv();
        if (r == null) {
            return; // UD has no RNR: the datagram is dropped
        }
        Packet.Payload pl = p.payload();
        int plen = (int) pl.length();
        byte[] buf = new byte[40 + plen];
        // GRH: IP version 6, payload length, next header 0x1B (IBA), hop limit, SGID, DGID
        buf[0] = 0x60;
        buf[4] = (byte) (plen >> 8);
        buf[5] = (byte) plen;
        buf[6] = 0x1B;
        buf[7] = 64;
        System.arraycopy(p.sgid().raw(), 0, buf, 8, 16);
        System.arraycopy(p.dgid().raw(), 0, buf, 24, 16);
        pl.copyTo(0, MemorySegment.ofArray(buf).asSlice(40, plen));
        try {
            handle.memory().scatter(qp, r.wr().sgList(), MemorySegment.ofArray(buf));
        } catch (AccessFault f) {
            qp.completeRecv(r, RecvResult.error(f.status()));
            return;
        }
        RecvResult res = p.op() == Op.UD_SEND_IMM ? RecvResult.sendWithImm(plen + 40L, p.srcQpn(), p.imm(), p.se())
                : RecvResult.send(plen + 40L, p.srcQpn(), p.se());
        qp.completeRecv(r, res.withGrh());
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
        final java.util.concurrent.atomic.AtomicBoolean queued = new java.util.concurrent.atomic.AtomicBoolean();
        // requester
        int npsn;
        final java.util.ArrayDeque<Msg> inflight = new java.util.ArrayDeque<>();
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
        final Map<Integer, Long> atomicResults = new java.util.LinkedHashMap<>() {
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
