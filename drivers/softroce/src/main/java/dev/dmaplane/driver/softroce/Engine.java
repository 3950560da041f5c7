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
                        // a malformed or racing packet must not kill the HCA
                    }
                }
                QpCtx c;
                while ((c = ready.poll()) != null) {
                    c.queued.set(false);
                    if (qps.get(c.qp.qpNum()) == c) {
                        requester(c);
                    }
                }
                next = timers();
            } finally {
                lock.unlock();
            }
            if (inbox.isEmpty() && ready.isEmpty() && running) {
                long now = System.nanoTime();
                LockSupport.parkNanos(this, next == 0 ? TimeUnit.MILLISECONDS.toNanos(50) : Math.max(1, next - now));
            }
        }
    }

    /** Fires due timers; returns the earliest pending deadline or 0. */
    private long timers() {
        long now = System.nanoTime();
        long next = 0;
        for (QpCtx c : qps.values()) {
            if (c.cur == null) {
                continue;
            }
            if (c.cur.isCompleted()) { // flushed under us
                c.cur = null;
                continue;
            }
            if (c.deadline - now <= 0) {
                if (c.rnrWait) {
                    c.rnrWait = false;
                    transmit(c);
                } else if (c.retryLeft-- > 0) {
                    retries++;
                    transmit(c);
                } else {
                    finish(c, WcStatus.RETRY_EXC_ERR);
                    requester(c);
                    continue;
                }
            }
            if (c.cur != null && (next == 0 || c.deadline - next < 0)) {
                next = c.deadline;
            }
        }
        return next;
    }

    // ---- requester ----

    private void requester(QpCtx c) {
        HwQp qp = c.qp;
        MemoryAccess mem = handle.memory();
        while (c.cur == null) {
            SendWqe w = qp.nextSend();
            if (w == null) {
                return;
            }
            if (w.opcode().isLocal()) {
                qp.completeSend(w, mem.executeLocal(qp, w));
                continue;
            }
            try {
                if (qp.type() == QpType.UD) {
                    qp.completeSend(w, udSend(c, w));
                    continue;
                }
                begin(c, w);
            } catch (AccessFault f) {
                qp.completeSend(w, f.status());
                c.cur = null;
            }
        }
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
                0, qkey, data, w.solicited()));
        c.npsn = Packet.psnAdd(c.npsn, 1);
        return WcStatus.SUCCESS;
    }

    private void begin(QpCtx c, SendWqe w) {
        HwQp qp = c.qp;
        var a = qp.attr();
        c.cur = w;
        c.firstPsn = c.npsn;
        c.mtu = a.pathMtu().bytes();
        c.retryLeft = a.retryCnt();
        c.rnrLeft = a.rnrRetry();
        c.data = null;
        c.readBuf = null;
        long len = w.length();
        int pkts = (int) Math.max(1, (len + c.mtu - 1) / c.mtu);
        switch (w.wr()) {
            case SendWr.RdmaRead r -> {
                c.readBuf = new byte[(int) len];
                c.npsn = Packet.psnAdd(c.firstPsn, pkts);
            }
            case SendWr.AtomicCmpAndSwp s -> c.npsn = Packet.psnAdd(c.firstPsn, 1);
            case SendWr.AtomicFetchAndAdd s -> c.npsn = Packet.psnAdd(c.firstPsn, 1);
            default -> {
                c.data = payload(qp, w);
                c.npsn = Packet.psnAdd(c.firstPsn, pkts);
            }
        }
        transmit(c);
    }

    /** Sends (or resends) the current message from its first PSN and arms the retransmit timer. */
    private void transmit(QpCtx c) {
        HwQp qp = c.qp;
        SendWqe w = c.cur;
        Gid dgid = qp.attr().ahAttr().grh().dgid();
        int dqpn = qp.attr().destQpNum();
        int me = qp.qpNum();
        int psn = c.firstPsn;
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
                byte[] d = c.data;
                int n = Math.max(1, (d.length + c.mtu - 1) / c.mtu);
                for (int i = 0; i < n; i++) {
                    int from = i * c.mtu;
                    int to = Math.min(d.length, from + c.mtu);
                    byte[] chunk = (n == 1) ? d : java.util.Arrays.copyOfRange(d, from, to);
                    boolean last = i == n - 1;
                    boolean ackReq = last || (i % ACK_EVERY) == ACK_EVERY - 1;
                    send(new Packet(gid, dgid, me, dqpn, op, i == 0, last, Packet.psnAdd(psn, i), ackReq, va, rkey,
                            d.length, imm, 0, 0, 0, 0, 0, 0, chunk, last && w.solicited()));
                }
            }
        }
        c.deadline = System.nanoTime() + timeoutNs(qp.attr().timeout());
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
        if (!c.rnrWait) {
            c.deadline = System.nanoTime() + timeoutNs(c.qp.attr().timeout());
        }
    }

    private void finish(QpCtx c, WcStatus status) {
        SendWqe w = c.cur;
        c.cur = null;
        c.data = null;
        c.readBuf = null;
        c.rnrWait = false;
        if (!w.isCompleted()) {
            c.qp.completeSend(w, status);
        }
    }

    /** The completer: ACK/NAK, read responses and atomic acknowledgements for the message in flight. */
    private void completer(QpCtx c, Packet p) {
        SendWqe w = c.cur;
        if (w == null || w.isCompleted()) {
            c.cur = null;
            return;
        }
        int off = Packet.psnDiff(p.psn(), c.firstPsn);
        int lastPsn = Packet.psnAdd(c.npsn, -1);
        switch (p.op()) {
            case READ_RESP -> {
                if (c.readBuf == null || off < 0 || Packet.psnDiff(p.psn(), lastPsn) > 0) {
                    return;
                }
                System.arraycopy(p.payload(), 0, c.readBuf, off * c.mtu, p.payload().length);
                progress(c);
                if (p.psn() == lastPsn) {
                    WcStatus st = WcStatus.SUCCESS;
                    try {
                        handle.memory().scatter(c.qp, w.wr().sgList(), MemorySegment.ofArray(c.readBuf));
                    } catch (AccessFault f) {
                        st = f.status();
                    }
                    finish(c, st);
                }
            }
            case ATOMIC_ACK -> {
                if (p.psn() != c.firstPsn) {
                    return;
                }
                byte[] out = new byte[8];
                MemorySegment.ofArray(out).set(ValueLayout.JAVA_LONG_UNALIGNED, 0, p.orig());
                WcStatus st = WcStatus.SUCCESS;
                try {
                    handle.memory().scatter(c.qp, w.wr().sgList(), MemorySegment.ofArray(out));
                } catch (AccessFault f) {
                    st = f.status();
                }
                finish(c, st);
            }
            case ACK -> {
                int syn = p.syndrome();
                if (syn == Packet.AETH_ACK) {
                    if (off >= 0 && Packet.psnDiff(p.psn(), lastPsn) < 0) {
                        progress(c); // a coalesced ACK inside a long message
                    }
                    if (c.readBuf == null && p.psn() == lastPsn && !(w.wr() instanceof SendWr.AtomicCmpAndSwp)
                            && !(w.wr() instanceof SendWr.AtomicFetchAndAdd)) {
                        finish(c, WcStatus.SUCCESS);
                    }
                } else if ((syn & 0x60) == Packet.AETH_RNR) {
                    if (c.rnrWait || off < 0) {
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
                                transmit(c);
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
        if (c.cur == null) {
            requester(c);
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
        if (qp.type() != QpType.RC || p.srcQpn() != qp.attr().destQpNum()) {
            return;
        }
        int d = Packet.psnDiff(p.psn(), c.epsn);
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
        if ((syndrome & 0x60) == Packet.AETH_RNR) {
            rnrNaksSent++;
        }
        send(new Packet(gid, req.sgid(), c.qp.qpNum(), req.srcQpn(), Op.ACK, true, true, psn, false, 0, 0, 0, 0, 0, 0,
                syndrome, c.msn, 0, 0, Packet.EMPTY));
    }

    /** A class B/C responder error: NAK and the responder's QP goes to ERR. */
    private void nakFatal(QpCtx c, Packet req, int syndrome) {
        c.resetResponder();
        c.qp.enterError();
        ack(c, req, syndrome, req.psn());
    }

    private void duplicate(QpCtx c, Packet p) {
        switch (p.op()) {
            case READ_REQ -> recvReadAt(c, p, false);
            case CMP_SWAP, FETCH_ADD -> {
                if (c.lastAtomicPsn == p.psn()) {
                    send(new Packet(gid, p.sgid(), c.qp.qpNum(), p.srcQpn(), Op.ATOMIC_ACK, true, true, p.psn(), false,
                            0, 0, 0, 0, 0, 0, Packet.AETH_ACK, c.msn, c.lastAtomicOrig, 0, Packet.EMPTY));
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
        byte[] pl = p.payload();
        if (c.recvOff + pl.length > c.recv.length()) {
            RecvWqe r = c.recv;
            c.recv = null;
            ack(c, p, Packet.AETH_NAK_INV_REQ, p.psn());
            qp.completeRecv(r, RecvResult.error(WcStatus.LOC_LEN_ERR));
            return;
        }
        System.arraycopy(pl, 0, c.recvBuf, (int) c.recvOff, pl.length);
        c.recvOff += pl.length;
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
        byte[] pl = p.payload();
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
                if (pl.length > 0) {
                    l.write(0, MemorySegment.ofArray(pl));
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
            try (DmaLease l = mem.remote(qp, c.wrkey, c.wva + c.woff, pl.length, Access.REMOTE_WRITE)) {
                l.write(0, MemorySegment.ofArray(pl));
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
        c.woff += pl.length;
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
            for (int i = 0; i < pkts; i++) {
                long from = (long) i * mtu;
                int n = (int) Math.min(mtu, len - from);
                byte[] b = new byte[Math.max(0, n)];
                if (n > 0) {
                    l.read(from, MemorySegment.ofArray(b));
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
        c.lastAtomicPsn = p.psn();
        c.lastAtomicOrig = old;
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
        byte[] pl = p.payload();
        byte[] buf = new byte[40 + pl.length];
        // GRH: IP version 6, payload length, next header 0x1B (IBA), hop limit, SGID, DGID
        buf[0] = 0x60;
        buf[4] = (byte) (pl.length >> 8);
        buf[5] = (byte) pl.length;
        buf[6] = 0x1B;
        buf[7] = 64;
        System.arraycopy(p.sgid().raw(), 0, buf, 8, 16);
        System.arraycopy(p.dgid().raw(), 0, buf, 24, 16);
        System.arraycopy(pl, 0, buf, 40, pl.length);
        try {
            handle.memory().scatter(qp, r.wr().sgList(), MemorySegment.ofArray(buf));
        } catch (AccessFault f) {
            qp.completeRecv(r, RecvResult.error(f.status()));
            return;
        }
        RecvResult res = p.op() == Op.UD_SEND_IMM ? RecvResult.sendWithImm(pl.length + 40L, p.srcQpn(), p.imm(), p.se())
                : RecvResult.send(pl.length + 40L, p.srcQpn(), p.se());
        qp.completeRecv(r, res.withGrh());
    }

    /** Driver-private state of one QP (what {@code struct rxe_qp} keeps in its req, resp and comp parts). */
    static final class QpCtx {
        final HwQp qp;
        final java.util.concurrent.atomic.AtomicBoolean queued = new java.util.concurrent.atomic.AtomicBoolean();
        // requester
        int npsn;
        SendWqe cur;
        int firstPsn;
        int mtu = 1024;
        byte[] data;
        byte[] readBuf;
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
        int lastAtomicPsn = -1;
        long lastAtomicOrig;

        QpCtx(HwQp qp) {
            this.qp = qp;
        }

        void reset() {
            cur = null;
            data = null;
            readBuf = null;
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
