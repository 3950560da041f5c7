package dev.dmaplane.driver.softroce;

import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.driver.softroce.Packet.Op;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.UdDestination;
import dev.dmaplane.rdma.verbs.WcStatus;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.List;

/**
 * The requester of one HCA ({@code rxe_req.c}): takes send work requests in order, runs local operations, builds
 * and sends the packets of each message (gathered, or cut through from the requester's lease), and retransmits
 * go-back-N. Runs on the thread running its {@link Engine}.
 * <p>
 * Why one class of about 500 lines: it is {@code rxe_req.c}, one file in the kernel too; building a message's
 * packets, batching WRITEs into trains, cut-through from the lease and go-back-N retransmission share the send
 * queue's cursor and the train arrays. The other halves of the QP are already apart ({@link Responder},
 * {@link Completer}).
 */
final class Requester {
    private final Engine e;

    Requester(Engine e) {
        this.e = e;
        newTrainArrays();
    }

    /**
     * Starts every work request the window allows: RC messages are pipelined up to {@link Engine#MAX_INFLIGHT} messages and
     * {@code max_rd_atomic} reads and atomics; a FENCE waits for the reads and atomics before it, a local operation
     * or a request that failed locally waits until everything before it completed (completions are in order).
     */
    void run(QpCtx c) {
        HwQp qp = c.qp;
        MemoryAccess mem = e.handle.memory();
        c.dropFlushed();
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
                    e.clearLeases(); // a bind or an invalidation may need what the kept leases hold
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
            if (c.inflight.size() >= Engine.MAX_INFLIGHT || windowFull(c) || (rdAtomic && c.readsInFlight >= maxRd)
                    || (w.fenced() && c.readsInFlight > 0)) {
                c.held = w;
                return;
            }
            if (qp.type() == QpType.UC) {
                WcStatus st = WcStatus.SUCCESS;
                try {
                    start(c, w);
                    e.completer.finish(c, WcStatus.SUCCESS); // unacknowledged: done once on the wire
                } catch (AccessFault f) {
                    st = f.status();
                    qp.completeSend(w, st);
                }
                continue;
            }
            try {
                if (!train(c, w)) {
                    start(c, w);
                }
            } catch (AccessFault f) {
                c.held = w;
                c.heldStatus = f.status();
            }
        }
    }

    /**
     * Whether the PSNs sent and not acknowledged fill the transport's window ({@code rxe_req.c}: the requester waits
     * while {@code req.psn} is more than {@code RXE_MAX_UNACKED_PSNS} past {@code comp.psn}); never with nothing in
     * flight, so a message longer than the window still goes.
     */
    private boolean windowFull(QpCtx c) {
        return windowRoom(c) <= 0;
    }

    /** PSNs the window has room for: at least one with nothing in flight. */
    private int windowRoom(QpCtx c) {
        Msg oldest = c.inflight.peekFirst();
        int max = e.transport.maxUnackedPsns();
        if (oldest == null) {
            return Math.max(1, max);
        }
        int unacked = (c.npsn - (oldest.ackedThrough + 1)) & Packet.PSN_MASK;
        return max - unacked;
    }

    /** Most single-packet WRITE messages one train carries. */
    static final int TRAIN_MAX = 64;

    /** Where {@link #train} gathers a train's RETHs and payload ranges before the packet takes a copy of them. */
    private long[] trainVas;
    private int[] trainLengths;
    private long[] trainOffsets;
    private DmaLease[] trainLeases;

    private void newTrainArrays() {
        trainVas = new long[TRAIN_MAX];
        trainLengths = new int[TRAIN_MAX];
        trainOffsets = new long[TRAIN_MAX];
        trainLeases = new DmaLease[TRAIN_MAX];
    }

    /**
     * Whether {@code w} may travel in a train: an RDMA WRITE without immediate, not inline, of one SGE and of one
     * packet, to a remote range that does not wrap, while the fabric takes trains (no loss injection).
     */
    private boolean trainable(SendWqe w, int mtu) {
        return w.wr() instanceof SendWr.RdmaWrite r && w.inlineData() == null && w.length() > 0 && w.length() <= mtu
                && r.sgList().size() == 1 && r.remoteAddr() >= 0 && r.remoteAddr() + w.length() > 0
                && !e.transport.perPacket();
    }

    /**
     * Starts {@code w} and the RC WRITE requests queued right behind it as one train of single-packet messages
     * ({@link Packet.Payload.Messages}), each a message of its own with its PSN and RETH, for as long as they may
     * travel in a train, go through {@code w}'s rkey, write a remote range that overlaps or abuts what the train
     * writes already (so the responder's one lease for the train covers no byte that no message writes: an
     * on-demand target faults in no page it would not have), read through stable local leases, and the window has
     * room. The first request that does not fit is held for the next turn of {@link #run}, with the status of its
     * local fault if its own lease was refused (as {@link #start} would have failed it). False, with nothing
     * started, when {@code w} cannot open a train.
     */
    private boolean train(QpCtx c, SendWqe w) {
        HwQp qp = c.qp;
        var a = qp.attr();
        int mtu = a.pathMtu().bytes();
        if (!trainable(w, mtu)) {
            return false;
        }
        Sge sge = w.wr().sgList().getFirst();
        LeaseCache.Held h = e.local(qp, sge);
        if (h.owned()) { // not a stable lease: the message gathers its payload, alone
            h.close();
            return false;
        }
        // the local lease the latest message reads through: its lkey and the address its offset 0 stands for
        DmaLease lease = h.lease();
        int lkey = sge.lkey();
        long base = sge.addr() - h.offset();
        int rkey = ((SendWr.RdmaWrite) w.wr()).rkey();
        int room = Math.min(Math.min(TRAIN_MAX, Engine.MAX_INFLIGHT - c.inflight.size()), windowRoom(c));
        long[] vas = trainVas;
        int[] lengths = trainLengths;
        long[] offsets = trainOffsets;
        DmaLease[] leases = trainLeases;
        int firstPsn = c.npsn;
        int n = 0;
        long lo = ((SendWr.RdmaWrite) w.wr()).remoteAddr();
        long hi = lo;
        SendWqe x = w;
        while (true) {
            SendWr.RdmaWrite wr = (SendWr.RdmaWrite) x.wr();
            lo = Math.min(lo, wr.remoteAddr());
            hi = Math.max(hi, wr.remoteAddr() + x.length());
            vas[n] = wr.remoteAddr();
            lengths[n] = (int) x.length();
            offsets[n] = wr.sgList().getFirst().addr() - base;
            leases[n] = lease;
            Msg m = new Msg(x);
            m.mtu = mtu;
            inFlight(c, m, 1);
            if (++n == room || (x = qp.nextSend()) == null) {
                break;
            }
            if (!joins(x, mtu, rkey, lo, hi) || (x.fenced() && c.readsInFlight > 0)) {
                c.held = x;
                break;
            }
            Sge next = x.wr().sgList().getFirst();
            if (next.lkey() == lkey && LeaseCache.covers(base, base + lease.length(), next.addr(), next.length())) {
                continue; // inside the latest lease
            }
            if (e.localLeasesFull()) { // keeping one more would close those the train's bytes are in
                c.held = x;
                break;
            }
            try {
                h = e.local(qp, next);
            } catch (AccessFault f) { // fails as start would have failed it
                c.held = x;
                c.heldStatus = f.status();
                break;
            }
            if (h.owned()) {
                h.close();
                c.held = x;
                break;
            }
            lease = h.lease();
            lkey = next.lkey();
            base = next.addr() - h.offset();
        }
        e.counters.trainsSent++;
        Packet.Payload.Messages train;
        if (n == TRAIN_MAX) { // the packet takes the arrays; the next train fills new ones
            train = Packet.Payload.Messages.of(n, vas, lengths, offsets, leases);
            newTrainArrays();
        } else {
            train = Packet.Payload.Messages.of(n, Arrays.copyOf(vas, n), Arrays.copyOf(lengths, n),
                    Arrays.copyOf(offsets, n), Arrays.copyOf(leases, n));
            Arrays.fill(leases, 0, n, null);
        }
        e.send(new Packet(e.gid, a.ahAttr().grh().dgid(), qp.qpNum(), a.destQpNum(), Op.WRITE, true, true, firstPsn, n,
                true, vas[0], rkey, lengths[0], 0, 0, 0, 0, 0, 0, 0, train, false));
        return true;
    }

    /** Whether {@code x} may join a train through {@code rkey} that writes {@code [lo, hi)}. */
    private boolean joins(SendWqe x, int mtu, int rkey, long lo, long hi) {
        if (!trainable(x, mtu) || ((SendWr.RdmaWrite) x.wr()).rkey() != rkey) {
            return false;
        }
        long va = ((SendWr.RdmaWrite) x.wr()).remoteAddr();
        return va <= hi && va + x.length() >= lo;
    }

    /**
     * Gives {@code m} its {@code pkts} PSNs and puts it in flight: the transport timer and the retry counts start
     * with the first message in flight.
     */
    private void inFlight(QpCtx c, Msg m, int pkts) {
        m.firstPsn = c.npsn;
        m.lastPsn = Packet.psnAdd(c.npsn, pkts - 1);
        m.ackedThrough = Packet.psnAdd(c.npsn, -1);
        c.npsn = Packet.psnAdd(c.npsn, pkts);
        if (c.inflight.isEmpty()) {
            var a = c.qp.attr();
            c.retryStarted = false;
            c.retryLeft = a.retryCnt();
            c.rnrLeft = a.rnrRetry();
            e.timers.arm(c, System.nanoTime() + Timers.timeoutNs(a.timeout()));
        }
        if (isReadOrAtomic(m.w)) {
            c.readsInFlight++;
        }
        c.inflight.addLast(m);
    }

    static boolean isAtomic(SendWqe w) {
        return w.wr() instanceof SendWr.AtomicCmpAndSwp || w.wr() instanceof SendWr.AtomicFetchAndAdd;
    }

    static boolean isReadOrAtomic(SendWqe w) {
        return w.wr() instanceof SendWr.RdmaRead || w.wr() instanceof SendWr.AtomicCmpAndSwp
                || w.wr() instanceof SendWr.AtomicFetchAndAdd;
    }

    private byte[] payload(HwQp qp, SendWqe w) {
        if (w.inlineData() != null) {
            return w.inlineData().toArray(ValueLayout.JAVA_BYTE);
        }
        if (w.length() > Integer.MAX_VALUE - 8) {
            throw new AccessFault(WcStatus.LOC_LEN_ERR, Errno.EINVAL, "message too long");
        }
        byte[] b = new byte[(int) w.length()];
        List<Sge> sges = w.wr().sgList();
        if (sges.size() == 1 && b.length > 0) {
            try (LeaseCache.Held h = e.local(qp, sges.getFirst())) {
                h.lease().read(h.offset(), MemorySegment.ofArray(b));
            } catch (DmaFaultException x) {
                throw new AccessFault(WcStatus.LOC_PROT_ERR, Errno.EFAULT,
                        "IOMMU refused the read of " + sges.getFirst(), x);
            }
            return b;
        }
        e.handle.memory().gather(qp, sges, MemorySegment.ofArray(b));
        return b;
    }

    /**
     * A short payload of one SGE as a range of the stable lease the engine keeps for this round: the HCA reads it as
     * the packet leaves (the receiving HCA copies it straight from there, or the fabric stores a copy), with no
     * gather into a buffer of the requester. Null when the payload must be gathered (inline data, several SGEs,
     * a lease that is not stable); a retransmission reads the memory again through a lease of its own.
     */
    private Packet.Payload leased(HwQp qp, SendWqe w) {
        if (qp.type() != QpType.RC || w.inlineData() != null || w.length() == 0 || w.wr().sgList().size() != 1) {
            return null; // UC completes as it sends: its bytes must be read by then
        }
        Sge sge = w.wr().sgList().getFirst();
        LeaseCache.Held h = e.local(qp, sge);
        if (h.owned()) {
            h.close();
            return null;
        }
        return new Packet.Payload.Span(h.lease(), h.offset(), sge.length());
    }

    /** Whether {@code w}'s payload goes cut-through (see {@link Engine#CUT_THROUGH_MIN}). */
    private static boolean cutThrough(SendWqe w) {
        return w.inlineData() == null && w.length() >= Engine.CUT_THROUGH_MIN && w.wr().sgList().size() == 1;
    }

    private WcStatus udSend(QpCtx c, SendWqe w) {
        HwQp qp = c.qp;
        SendWr wr = w.wr();
        UdDestination ud;
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
        e.send(new Packet(e.gid, dgid, qp.qpNum(), ud.remoteQpn(), op, true, true, c.npsn, 1, false, 0, 0, 0, imm, 0, 0,
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
        int pkts = Packet.packetsFor(len, m.mtu);
        boolean cut = false;
        switch (w.wr()) {
            case SendWr.RdmaRead r -> m.readBuf = new byte[(int) len];
            case SendWr.AtomicCmpAndSwp s -> pkts = 1;
            case SendWr.AtomicFetchAndAdd s -> pkts = 1;
            default -> {
                cut = cutThrough(w);
                if (!cut) {
                    m.firstPayload = leased(qp, w);
                    if (m.firstPayload == null) {
                        m.data = payload(qp, w);
                    }
                }
            }
        }
        m.firstPsn = c.npsn;
        m.lastPsn = Packet.psnAdd(c.npsn, pkts - 1);
        if (cut) { // sent before it is in flight: a refused lease fails the request before it takes PSNs
            try {
                transmit(c, m);
            } catch (DmaFaultException x) {
                throw new AccessFault(WcStatus.LOC_PROT_ERR, Errno.EFAULT,
                        "IOMMU refused the read of the payload of " + w, x);
            }
        }
        inFlight(c, m, pkts);
        if (!cut) {
            transmit(c, m);
        }
    }

    /**
     * Go-back-N, as an RC requester retransmits: every message in flight from {@code fromPsn}, or from the first
     * PSN not acknowledged yet when {@code fromPsn} is -1 (a timeout). A SEND or WRITE resumes at that packet of its
     * message, a READ asks for the rest of its data from that response on, an atomic is sent again whole. A READ
     * or an atomic behind the first that has its responses already (they came out of order) is not asked for
     * again, a READ behind it that has its first responses asks for the rest. The retry is then on its way until
     * the response to the first PSN it sent comes ({@link QpCtx#retryStarted}).
     */
    void retransmit(QpCtx c, int fromPsn) {
        boolean firstMsg = true;
        for (Msg m : c.inflight) {
            int k = 0;
            if (firstMsg) {
                if (!isAtomic(m.w)) {
                    int from = fromPsn >= 0 ? fromPsn : Packet.psnAdd(m.ackedThrough, 1);
                    int d = Packet.psnDiff(from, m.firstPsn);
                    if (d > 0 && Packet.psnDiff(from, m.lastPsn) <= 0) {
                        k = d;
                    }
                }
                c.retryStarted = true;
                c.retryPsn = Packet.psnAdd(m.firstPsn, k);
            } else if (m.readBuf != null) {
                if (m.ackedThrough == m.lastPsn) {
                    continue;
                }
                k = Packet.psnDiff(m.ackedThrough, m.firstPsn) + 1;
            } else if (m.resultIn) {
                continue;
            }
            firstMsg = false;
            try {
                transmit(c, m, k);
            } catch (AccessFault | DmaFaultException x) {
                break; // the region went away under a message in flight: nothing more is sent; the timer ends it
            }
        }
        e.timers.arm(c, System.nanoTime() + Timers.timeoutNs(c.qp.attr().timeout()));
    }

    void transmit(QpCtx c, Msg m) {
        transmit(c, m, 0);
    }

    /**
     * Sends the packets of {@code m} from its {@code fromPkt}-th (SEND and WRITE; requests without payload are
     * one packet): trains, or single packets while the fabric loses some.
     */
    void transmit(QpCtx c, Msg m, int fromPkt) {
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
                    e.counters.resentFromMiddle++;
                }
                e.send(Packet.control(e.gid, dgid, me, dqpn, Op.READ_REQ, Packet.psnAdd(psn, fromPkt), true,
                        r.remoteAddr() + skip, r.rkey(), w.length() - skip, 0, 0, 0, 0, 0));
            }
            case SendWr.AtomicCmpAndSwp s -> e.send(Packet.control(e.gid, dgid, me, dqpn, Op.CMP_SWAP, psn, true,
                    s.remoteAddr(), s.rkey(), 8, s.swap(), s.compare(), 0, 0, 0));
            case SendWr.AtomicFetchAndAdd s -> e.send(Packet.control(e.gid, dgid, me, dqpn, Op.FETCH_ADD, psn, true,
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
                Packet.Payload first = m.firstPayload;
                if (first != null) { // the first transmission of a short payload leased for this round
                    m.firstPayload = null;
                    packets(c, m, op, va, rkey, imm, dgid, dqpn, first, fromPkt);
                    return;
                }
                if (m.data != null) {
                    packets(c, m, op, va, rkey, imm, dgid, dqpn, m.segment(), fromPkt);
                    return;
                }
                // cut-through: the packets carry a range of the lease, which stays open until the fabric took them
                e.flushTx();
                Sge sge = w.wr().sgList().getFirst();
                try (DmaLease l = e.handle.memory().local(qp.pd(), sge.lkey(), sge.addr(), sge.length(), 0)) {
                    Packet.Payload.Span span = new Packet.Payload.Span(l, 0, sge.length());
                    // an on-demand or dma-buf lease is not held while the responder takes its own: gathered first
                    packets(c, m, op, va, rkey, imm, dgid, dqpn, l.stable() ? span : span.materialize(), fromPkt);
                    e.flushTx();
                }
            }
        }
    }

    /** The packets of a SEND or WRITE message with {@code payload}: one train, or single packets. */
    private void packets(QpCtx c, Msg m, Op op, long va, int rkey, int imm, Gid dgid, int dqpn, Packet.Payload payload,
                         int fromPkt) {
        long len = payload.length();
        int n = Packet.packetsFor(len, m.mtu);
        int per = e.transport.perPacket() ? 1 : n;
        int me = c.qp.qpNum();
        for (int i = fromPkt; i < n; i += per) {
            int k = Math.min(per, n - i);
            long from = (long) i * m.mtu;
            long to = Math.min(len, from + (long) k * m.mtu);
            boolean last = i + k == n;
            boolean ackReq = last || (per == 1 && (i % Engine.ACK_EVERY) == Engine.ACK_EVERY - 1);
            Packet.Payload part = (k == n) ? payload : payload.slice(from, to - from);
            if (i == fromPkt && fromPkt > 0) {
                e.counters.resentFromMiddle++;
            }
            e.send(new Packet(e.gid, dgid, me, dqpn, op, i == 0, last, Packet.psnAdd(m.firstPsn, i), k, ackReq, va,
                    rkey, len, imm, 0, 0, 0, 0, 0, 0, part, last && m.w.solicited()));
        }
    }
}
