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
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The per-HCA engine: one worker thread running the requester ({@code rxe_req.c}), the responder
 * ({@code rxe_resp.c}) and the completer ({@code rxe_comp.c}) of every QP of the device. Doorbells and packets
 * are queued lock-free and the worker drains them in batches. The requester keeps one RC message in flight per QP
 * (stop-and-wait per work request, every packet of the message sent at once), which gives RC ordering and fences
 * for free; retries (transport timeout and RNR) resend the message from its first PSN.
 */
final class Engine implements Runnable {
    /** Longest transport timeout used, whatever the QP's {@code timeout} says (keeps peer-gone tests short). */
    static final long MAX_TIMEOUT_NS = TimeUnit.MILLISECONDS.toNanos(20);
    /** Longest RNR delay used. */
    static final long MAX_RNR_NS = TimeUnit.MILLISECONDS.toNanos(2);
    /** Shortest transport timeout used: a soft HCA shares its CPU. */
    static final long MIN_TIMEOUT_NS = TimeUnit.MILLISECONDS.toNanos(10);
    /** The requester asks for an acknowledgement every this many packets of a long message (progress restarts the timer). */
    static final int ACK_EVERY = 64;
    /** RC messages in flight per QP. */
    static final int MAX_INFLIGHT = 64;

    private final String name;
    private final Fabric fabric;
    private final Gid gid;
    private volatile RdmaDeviceHandle handle;
    private final ConcurrentLinkedQueue<Packet> inbox = new ConcurrentLinkedQueue<>();
    private final ConcurrentLinkedQueue<QpCtx> ready = new ConcurrentLinkedQueue<>();
    private final Map<Integer, QpCtx> qps = new ConcurrentHashMap<>();
    /** Held by the worker while it works, and by control hooks that change QP state. */
    final ReentrantLock lock = new ReentrantLock();
    private volatile boolean running;
    private Thread thread;

    // counters
    volatile long pktsSent;
    volatile long pktsRecv;
    volatile long retries;
    volatile long rnrNaksSent;
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

    /** Stops the worker and waits for it; nothing runs afterwards. */
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
        inbox.clear();
        ready.clear();
    }

    boolean isRunning() {
        Thread t = thread;
        return t != null && t.isAlive();
    }

    boolean receive(Packet p) {
        if (!running) {
            return false;
        }
        inbox.add(p);
        LockSupport.unpark(thread);
        return true;
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

    void doorbell(HwQp qp) {
        QpCtx c = ctx(qp);
        if (c.queued.compareAndSet(false, true)) {
            ready.add(c);
            Thread t = thread;
            if (t != null) {
                LockSupport.unpark(t);
            }
        }
    }

    // ---- the worker ----

    @Override
    public void run() {
        while (running) {
            long next;
            lock.lock();
            try {
                Packet p;
                int budget = 4096;
                while (budget-- > 0 && (p = inbox.poll()) != null) {
                    pktsRecv++;
                    try {
                        dispatch(p);
                    } catch (RuntimeException e) {
                        failed(e); // a malformed or racing packet must not kill the HCA
                    }
                }
                QpCtx c;
                while ((c = ready.poll()) != null) {
                    c.queued.set(false);
                    if (qps.get(c.qp.qpNum()) == c) {
                        try {
                            requester(c);
                        } catch (RuntimeException e) {
                            failed(e);
                        }
                    }
                }
                try {
                    next = timers();
                } catch (RuntimeException e) {
                    failed(e);
                    next = System.nanoTime() + MIN_TIMEOUT_NS;
                }
            } finally {
                lock.unlock();
            }
            if (inbox.isEmpty() && ready.isEmpty() && running) {
                long now = System.nanoTime();
                LockSupport.parkNanos(this, next == 0 ? TimeUnit.MILLISECONDS.toNanos(50) : Math.max(1, next - now));
            }
        }
    }

    private void failed(RuntimeException e) {
        errors++;
        lastError = e;
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
                    retransmit(c);
                } else if (c.retryLeft-- > 0) {
                    retries++;
                    retransmit(c);
                } else {
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
        handle.memory().gather(qp, w.wr().sgList(), MemorySegment.ofArray(b));
        return b;
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
        int mtu = qp.attr().pathMtu() != null ? qp.attr().pathMtu().bytes() : 1024;
        if (w.length() > Math.min(mtu, 1024)) {
            return WcStatus.LOC_LEN_ERR; // a UD message is one packet
        }
        byte[] data = payload(qp, w);
        int qkey = ud.remoteQkey() < 0 ? qp.attr().qkey() : ud.remoteQkey();
        Gid dgid = w.ah().attr().grh().dgid();
        send(new Packet(gid, dgid, qp.qpNum(), ud.remoteQpn(), op, true, true, c.npsn, false, 0, 0, 0, imm, 0, 0, 0, 0,
                0, qkey, MemorySegment.ofArray(data), w.solicited()));
        c.npsn = Packet.psnAdd(c.npsn, 1);
        return WcStatus.SUCCESS;
    }

    /** Builds the message of {@code w} (gathering its payload), gives it its PSNs and sends it. */
    private void start(QpCtx c, SendWqe w) {
        HwQp qp = c.qp;
        var a = qp.attr();
        Msg m = new Msg(w);
        m.mtu = a.pathMtu().bytes();
        long len = w.length();
        int pkts = (int) Math.max(1, (len + m.mtu - 1) / m.mtu);
        switch (w.wr()) {
            case SendWr.RdmaRead r -> m.readBuf = new byte[(int) len];
            case SendWr.AtomicCmpAndSwp s -> pkts = 1;
            case SendWr.AtomicFetchAndAdd s -> pkts = 1;
            default -> m.data = payload(qp, w);
        }
        m.firstPsn = c.npsn;
        m.lastPsn = Packet.psnAdd(c.npsn, pkts - 1);
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
        transmit(c, m);
    }

    /** Go-back-N: resends every message in flight from the oldest one's first PSN. */
    private void retransmit(QpCtx c) {
        for (Msg m : c.inflight) {
            transmit(c, m);
        }
        c.deadline = System.nanoTime() + timeoutNs(c.qp.attr().timeout());
    }

    /** Sends every packet of {@code m}. */
    private void transmit(QpCtx c, Msg m) {
        HwQp qp = c.qp;
        SendWqe w = m.w;
        Gid dgid = qp.attr().ahAttr().grh().dgid();
        int dqpn = qp.attr().destQpNum();
        int me = qp.qpNum();
        int psn = m.firstPsn;
        switch (w.wr()) {
            case SendWr.RdmaRead r -> send(new Packet(gid, dgid, me, dqpn, Op.READ_REQ, true, true, psn, true,
                    r.remoteAddr(), r.rkey(), w.length(), 0, 0, 0, 0, 0, 0, 0, Packet.EMPTY));
            case SendWr.AtomicCmpAndSwp s -> send(new Packet(gid, dgid, me, dqpn, Op.CMP_SWAP, true, true, psn, true,
                    s.remoteAddr(), s.rkey(), 8, 0, s.swap(), s.compare(), 0, 0, 0, 0, Packet.EMPTY));
            case SendWr.AtomicFetchAndAdd s -> send(new Packet(gid, dgid, me, dqpn, Op.FETCH_ADD, true, true, psn,
                    true, s.remoteAddr(), s.rkey(), 8, 0, s.add(), 0, 0, 0, 0, 0, Packet.EMPTY));
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
                byte[] d = m.data;
                MemorySegment all = m.segment();
                int n = Math.max(1, (d.length + m.mtu - 1) / m.mtu);
                for (int i = 0; i < n; i++) {
                    int from = i * m.mtu;
                    int to = Math.min(d.length, from + m.mtu);
                    MemorySegment chunk = (n == 1) ? all : all.asSlice(from, to - from);
                    boolean last = i == n - 1;
                    boolean ackReq = last || (i % ACK_EVERY) == ACK_EVERY - 1;
                    send(new Packet(gid, dgid, me, dqpn, op, i == 0, last, Packet.psnAdd(psn, i), ackReq, va, rkey,
                            d.length, imm, 0, 0, 0, 0, 0, 0, chunk, last && w.solicited()));
                }
            }
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
        c.retryLeft = c.qp.attr().retryCnt();
        c.rnrLeft = c.qp.attr().rnrRetry();
        if (!c.rnrWait) {
            c.deadline = System.nanoTime() + timeoutNs(c.qp.attr().timeout());
        }
    }

    /** Completes the oldest message in flight. */
    private void finish(QpCtx c, WcStatus status) {
        Msg m = c.inflight.pollFirst();
        if (m == null) {
            return;
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
        } else if (!c.inflight.isEmpty()) {
            progress(c);
        }
    }

    /** Completes the sends and writes before {@code psn} (a later response acknowledges them implicitly). */
    private void implicitAck(QpCtx c, int psn) {
        Msg m;
        while ((m = c.inflight.peekFirst()) != null && !isReadOrAtomic(m.w)
                && Packet.psnDiff(m.lastPsn, psn) < 0) {
            finish(c, WcStatus.SUCCESS);
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
                int off = Packet.psnDiff(p.psn(), m.firstPsn);
                if (off < 0 || Packet.psnDiff(p.psn(), m.lastPsn) > 0) {
                    return;
                }
                MemorySegment.copy(p.payload(), 0, MemorySegment.ofArray(m.readBuf), (long) off * m.mtu, p.payload().byteSize());
                progress(c);
                if (p.psn() == m.lastPsn) {
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
                        progress(c); // a coalesced ACK inside a long message
                    }
                    return;
                }
                implicitAck(c, p.psn()); // a NAK acknowledges everything before its PSN
                Msg m = c.inflight.peekFirst();
                if (m == null) {
                    return;
                }
                if ((syn & 0x60) == Packet.AETH_RNR) {
                    if (c.rnrWait) {
                        return;
                    }
                    if (c.rnrLeft != 7 && c.rnrLeft-- <= 0) {
                        finish(c, WcStatus.RNR_RETRY_EXC_ERR);
                    } else {
                        c.rnrWait = true;
                        c.deadline = System.nanoTime() + rnrNs(syn & 31);
                    }
                } else {
                    switch (syn) {
                        case Packet.AETH_NAK_PSN_SEQ -> {
                            if (!c.rnrWait) {
                                retries++;
                                retransmit(c);
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
                ack(c, p, Packet.AETH_NAK_PSN_SEQ, c.epsn);
            }
            return;
        }
        if (d < 0) {
            duplicate(c, p);
            return;
        }
        c.nakSent = false;
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
        pktsSent++;
        fabric.send(p);
    }

    private void ack(QpCtx c, Packet req, int syndrome, int psn) {
        if (c.qp.type() == QpType.UC) {
            return; // UC has no acknowledgements
        }
        if ((syndrome & 0x60) == Packet.AETH_RNR) {
            rnrNaksSent++;
        }
        send(new Packet(gid, req.sgid(), c.qp.qpNum(), req.srcQpn(), Op.ACK, true, true, psn, false, 0, 0, 0, 0, 0, 0,
                syndrome, c.msn, 0, 0, Packet.EMPTY));
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
        switch (p.op()) {
            case READ_REQ -> recvReadAt(c, p, false);
            case CMP_SWAP, FETCH_ADD -> {
                Long orig = c.atomicResults.get(p.psn());
                if (orig != null) {
                    send(new Packet(gid, p.sgid(), c.qp.qpNum(), p.srcQpn(), Op.ATOMIC_ACK, true, true, p.psn(), false,
                            0, 0, 0, 0, 0, 0, Packet.AETH_ACK, c.msn, orig, 0, Packet.EMPTY));
                }
            }
            default -> {
                if (p.last()) {
                    ack(c, p, Packet.AETH_ACK, Packet.psnAdd(c.epsn, -1));
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
        MemorySegment pl = p.payload();
        if (c.recvOff + pl.byteSize() > c.recv.length()) {
            RecvWqe r = c.recv;
            c.recv = null;
            ack(c, p, Packet.AETH_NAK_INV_REQ, p.psn());
            qp.completeRecv(r, RecvResult.error(WcStatus.LOC_LEN_ERR));
            return;
        }
        MemorySegment.copy(pl, 0, MemorySegment.ofArray(c.recvBuf), c.recvOff, pl.byteSize());
        c.recvOff += pl.byteSize();
        c.epsn = Packet.psnAdd(c.epsn, 1);
        if (!p.last()) {
            if (p.ackReq()) {
                ack(c, p, Packet.AETH_ACK, p.psn());
            }
            return;
        }
        RecvWqe r = c.recv;
        c.recv = null;
        long len = c.recvOff;
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
        ack(c, p, Packet.AETH_ACK, p.psn());
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
        MemorySegment pl = p.payload();
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
            try (DmaLease l = mem.remote(qp, p.rkey(), p.va(), p.dmaLen(), Access.REMOTE_WRITE)) {
                if (pl.byteSize() > 0) {
                    l.write(0, pl);
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
            try (DmaLease l = mem.remote(qp, c.wrkey, c.wva + c.woff, pl.byteSize(), Access.REMOTE_WRITE)) {
                l.write(0, pl);
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
        c.woff += pl.byteSize();
        c.epsn = Packet.psnAdd(c.epsn, 1);
        if (!p.last()) {
            if (p.ackReq()) {
                ack(c, p, Packet.AETH_ACK, p.psn());
            }
            return;
        }
        c.msn++;
        ack(c, p, Packet.AETH_ACK, p.psn());
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
        try (DmaLease l = handle.memory().remote(qp, p.rkey(), p.va(), len, Access.REMOTE_READ)) {
            MemorySegment all = MemorySegment.ofArray(new byte[(int) len]); // one buffer, one slice per packet
            for (int i = 0; i < pkts; i++) {
                long from = (long) i * mtu;
                int n = (int) Math.min(mtu, len - from);
                MemorySegment b = n > 0 ? all.asSlice(from, n) : Packet.EMPTY;
                if (n > 0) {
                    l.read(from, b);
                }
                send(new Packet(gid, p.sgid(), qp.qpNum(), p.srcQpn(), Op.READ_RESP, i == 0, i == pkts - 1,
                        Packet.psnAdd(p.psn(), i), false, 0, 0, 0, 0, 0, 0, Packet.AETH_ACK, c.msn, 0, 0, b));
            }
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
        try (DmaLease l = handle.memory().remote(qp, p.rkey(), p.va(), 8, Access.REMOTE_ATOMIC)) {
            old = p.op() == Op.CMP_SWAP ? l.compareAndSwap(0, p.compare(), p.swapAdd()) : l.fetchAndAdd(0, p.swapAdd());
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
        send(new Packet(gid, p.sgid(), qp.qpNum(), p.srcQpn(), Op.ATOMIC_ACK, true, true, p.psn(), false, 0, 0, 0, 0,
                0, 0, Packet.AETH_ACK, c.msn, old, 0, Packet.EMPTY));
    }

    private void udReceive(HwQp qp, Packet p) {
        if (qp.type() != QpType.UD || p.qkey() != qp.attr().qkey()) {
            return; // wrong Q_Key: silently dropped (IBTA 10.2.4)
        }
        RecvWqe r = qp.takeRecv();
        if (r == null) {
            return; // UD has no RNR: the datagram is dropped
        }
        MemorySegment pl = p.payload();
        int plen = (int) pl.byteSize();
        byte[] buf = new byte[40 + plen];
        // GRH: IP version 6, payload length, next header 0x1B (IBA), hop limit, SGID, DGID
        buf[0] = 0x60;
        buf[4] = (byte) (plen >> 8);
        buf[5] = (byte) plen;
        buf[6] = 0x1B;
        buf[7] = 64;
        System.arraycopy(p.sgid().raw(), 0, buf, 8, 16);
        System.arraycopy(p.dgid().raw(), 0, buf, 24, 16);
        MemorySegment.copy(pl, 0, MemorySegment.ofArray(buf), 40, plen);
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
        int mtu;
        byte[] data;
        byte[] readBuf;

        private MemorySegment segment;

        Msg(SendWqe w) {
            this.w = w;
        }

        /** The payload as a read-only segment, made once and sliced into packets on every (re)transmission. */
        MemorySegment segment() {
            if (segment == null) {
                segment = MemorySegment.ofArray(data).asReadOnly();
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
        RecvWqe recv;
        byte[] recvBuf;
        long recvOff;
        long wva;
        int wrkey;
        long woff;
        /** Results of the last atomics, by PSN, to answer duplicates (rxe's responder resources). */
        final Map<Integer, Long> atomicResults = new java.util.LinkedHashMap<>() {
            @Override
            protected boolean removeEldestEntry(Map.Entry<Integer, Long> e) {
                return size() > 16;
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
            recv = null;
            recvBuf = null;
            recvOff = 0;
            nakSent = false;
        }
    }
}
