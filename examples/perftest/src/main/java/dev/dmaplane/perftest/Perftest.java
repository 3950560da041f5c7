package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AddressHandle;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.CompletionChannel;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.SharedReceiveQueue;
import dev.dmaplane.rdma.verbs.SrqAttr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.UdDestination;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WorkCompletion;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.concurrent.atomic.AtomicReference;

/**
 * perftest's tools ({@code ib_write_bw}, {@code ib_read_bw}, {@code ib_send_bw}, {@code ib_atomic_bw},
 * {@code ib_write_lat}, {@code ib_read_lat}, {@code ib_send_lat}) between rxe0 (client) and rxe1 (server), in one
 * process through the public verbs. Every run checks the bytes at the end (the target's buffer against the source's,
 * the atomic counter against the number of atomics) and fails with {@code EIO} if they differ.
 */
public final class Perftest {
    static final String CLIENT = "rxe0";
    static final String SERVER = "rxe1";
    private static final int ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ | Access.REMOTE_ATOMIC;
    private static final long STALL_NS = 10_000_000_000L;
    private static final double MB = 1 << 20;

    private Perftest() {
    }

    /**
     * Boots the default machine, binds the Soft-RoCE driver to both HCAs, runs, shuts everything down (plain
     * classpath only: inside the runtime use {@link #run(Machine, RdmaCore, PerfConfig)}).
     */
    public static PerfResult run(PerfConfig cfg) {
        return Standalone.run(cfg);
    }

    /** Runs on a machine whose RDMA core already has rxe0 and rxe1 (the runtime, or a test's own setup). */
    public static PerfResult run(Machine machine, RdmaCore core, PerfConfig cfg) {
        return run(machine, core, cfg, BeforeCheck.NONE);
    }

    /**
     * What runs between a tool's transfers and its byte check, on the thread that checks: nothing in every public
     * entry point; the package's tests change bytes here to prove that the check catches them.
     */
    @FunctionalInterface
    interface BeforeCheck {
        BeforeCheck NONE = (cfg, client, server) -> {
        };

        /** Called once per size, after the last transfer of {@code cfg} and before its bytes are compared. */
        void run(PerfConfig cfg, Side client, Side server);
    }

    /** {@link #run(Machine, RdmaCore, PerfConfig)} with {@code beforeCheck} called before every byte check. */
    static PerfResult run(Machine machine, RdmaCore core, PerfConfig cfg, BeforeCheck beforeCheck) {
        int maxSize = cfg.sizes().stream().mapToInt(Integer::intValue).max().orElseThrow();
        long region = roundUp(Math.max(maxSize + GRH, 64), 4096);
        try (Side c = new Side(machine, core, CLIENT, cfg, region); Side s = new Side(machine, core, SERVER, cfg, region)) {
            List<Integer> sizes = cfg.sizes();
            if (cfg.connection() == QpType.UD) { // a datagram is one packet: perftest's "Max msg size in UD is MTU"
                int mtu = c.ctx.queryPort(1).activeMtu().bytes();
                if (!cfg.all() && cfg.size() > mtu) {
                    throw new ErrnoException(Errno.EINVAL, "perftest: invalid size -s " + cfg.size() + " for UD: a"
                            + " datagram is one packet of at most the path MTU (" + mtu + ")");
                }
                sizes = sizes.stream().filter(z -> z <= mtu).toList();
                c.ah = c.pd.createAh(AhAttr.roce(s.gid, 1, 1));
                s.ah = s.pd.createAh(AhAttr.roce(c.gid, 1, 1));
            }
            for (int q = 0; q < cfg.qps(); q++) {
                connect(c.qps[q], s.qps[q], s.gid, c.ctx, cfg.connection());
                connect(s.qps[q], c.qps[q], c.gid, s.ctx, cfg.connection());
            }
            StringBuilder out = new StringBuilder(header(cfg, c, s));
            List<PerfResult.Row> rows = new ArrayList<>();
            for (int size : sizes) {
                PerfConfig one = cfg.withSize(size);
                PerfResult.Row row = switch (cfg.test()) {
                    case WRITE_BW, READ_BW, SEND_BW, ATOMIC_BW -> cfg.bidirectional()
                            ? bidirectional(one, c, s, beforeCheck) : bw(one, c, s, beforeCheck);
                    case WRITE_LAT -> writeLat(one, c, s, beforeCheck);
                    case READ_LAT -> readLat(one, c, s, beforeCheck);
                    case SEND_LAT -> sendLat(one, c, s, beforeCheck);
                    case ATOMIC_LAT -> atomicLat(one, c, s, beforeCheck);
                };
                rows.add(row);
                out.append(format(cfg, row)).append('\n');
            }
            out.append(LINE).append('\n');
            return new PerfResult(cfg, List.copyOf(rows), out.toString());
        }
    }

    // ---------------------------------------------------------------- setup

    /** One end: address space, context, PD, CQ, per QP a send region and a receive region. */
    static final class Side implements AutoCloseable {
        /** The RDMA device this end runs on. */
        final String name;
        final AddressSpace mm;
        final VerbsContext ctx;
        final ProtectionDomain pd;
        /** Send completions, and receive completions too but for send_bw. */
        final CompletionQueue cq;
        /** {@code -e}: where {@link #cq} reports once armed; null when polling. */
        final CompletionChannel channel;
        /** {@code --use_srq}: the shared receive queue of this end's QPs; null when each QP has its own. */
        final SharedReceiveQueue srq;
        /** Receives a bandwidth run keeps posted per receive queue (per QP, or on the SRQ). */
        final int recvTarget;
        /**
         * send_bw's receive completions: a CQ of their own, as perftest gives SEND tests a {@code recv_cq}, so that
         * with {@code -b} the end that sends one way and the one that receives it never poll the same CQ.
         */
        final CompletionQueue rcq;
        final long buf;
        final long region;
        final long length;
        final MemoryRegion mr;
        final Gid gid;
        final QueuePair[] qps;
        /** UD: the address of the other end (perftest's {@code ah}), made once both ends exist. */
        AddressHandle ah;
        /**
         * Receives posted on each QP and not consumed yet, carried from one message size of {@code -a} to the next
         * (each covers the QP's whole receive region, so one posted for a small size serves a larger one); updated
         * by the thread that polls this end's receive completions.
         */
        final int[] recvsWaiting;
        final int sqDepth;
        final int rqDepth;

        Side(Machine machine, RdmaCore core, String dev, PerfConfig cfg, long region) {
            var device = core.device(dev).orElseThrow(() -> new ErrnoException(Errno.ENODEV,
                    "perftest: no RDMA device " + dev + " (is the Soft-RoCE driver bound?)"));
            int maxInline = device.attr().maxInlineData();
            if (cfg.inlineSize() > maxInline) { // checked before anything is set up for this side
                throw new ErrnoException(Errno.EINVAL, "perftest: invalid inline size -I " + cfg.inlineSize() + ": "
                        + dev + " takes at most " + maxInline + " bytes inline");
            }
            name = dev;
            mm = machine.newAddressSpace("perftest-" + dev);
            ctx = device.open(mm);
            this.region = region;
            sqDepth = Math.max(cfg.txDepth(), 16);
            rqDepth = Math.max(cfg.txDepth(), 16);
            pd = ctx.allocPd();
            channel = cfg.events() ? ctx.createCompChannel() : null;
            cq = ctx.createCq(Math.max(cfg.qps() * (sqDepth + rqDepth) + 16, 64), channel, 0);
            if (channel != null) {
                cq.reqNotify(false);
            }
            rcq = cfg.test() == PerfConfig.Test.SEND_BW ? ctx.createCq(Math.max(cfg.qps() * rqDepth + 16, 64), null, 0) : cq;
            length = 2 * region * cfg.qps();
            buf = mm.mmapAnonymous(length, Prot.PROT_READ | Prot.PROT_WRITE);
            mr = pd.regMr(buf, length, ALL);
            gid = ctx.queryGid(1, 1);
            // an SRQ holds as many receives as all the QPs would have had: none of them meets RNR for want of one
            recvTarget = cfg.srq() ? Math.min(cfg.qps() * rqDepth, device.attr().maxSrqWr()) : rqDepth;
            srq = cfg.srq() ? pd.createSrq(new SrqAttr(recvTarget, 1, 0)) : null;
            qps = new QueuePair[cfg.qps()];
            recvsWaiting = new int[cfg.qps()];
            for (int q = 0; q < qps.length; q++) {
                qps[q] = pd.createQp(new QpInitAttr(cq, rcq, srq, new QpCap(sqDepth, rqDepth, 1, 1, Math.max(64, cfg.inlineSize())), cfg.connection(),
                        false));
            }
        }

        long src(int q) {
            return buf + 2L * q * region;
        }

        long dst(int q) {
            return src(q) + region;
        }

        Sge sge(long addr, int len) {
            return new Sge(addr, len, mr.lkey());
        }

        void write(long addr, byte[] b) {
            mm.write(addr, MemorySegment.ofArray(b));
        }

        byte[] read(long addr, int len) {
            byte[] r = new byte[len];
            mm.read(addr, MemorySegment.ofArray(r));
            return r;
        }

        byte lastByte(long addr, int len) {
            byte[] one = new byte[1];
            mm.read(addr + len - 1, MemorySegment.ofArray(one));
            return one[0];
        }

        @Override
        public void close() {
            ctx.close();
            mm.close();
        }
    }

    /** perftest's Q_Key for UD ({@code DEF_QKEY}). */
    static final int QKEY = 0x11111111;
    /** Bytes of Global Route Header a UD receive buffer starts with (IBTA 11.4.1.1: the GRH lands first). */
    static final int GRH = 40;

    /** Where a UD receive's payload starts in its buffer: after the GRH; 0 for connected QPs. */
    private static int grh(PerfConfig cfg) {
        return cfg.connection() == QpType.UD ? GRH : 0;
    }

    /** The destination of a UD send from {@code from} to {@code to}'s QP {@code q}; null for connected QPs. */
    private static UdDestination ud(PerfConfig cfg, Side from, Side to, int q) {
        return cfg.connection() == QpType.UD ? new UdDestination(from.ah, to.qps[q].qpNum(), QKEY) : null;
    }

    /** The transitions to RTS with the attributes each transport requires (ibv_modify_qp's table). */
    private static void connect(QueuePair qp, QueuePair peer, Gid peerGid, VerbsContext ctx, QpType type) {
        if (type == QpType.UD) {
            qp.modify(QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1).qkey(QKEY).build());
            qp.modify(QpAttr.builder().state(QpState.RTR).build());
            qp.modify(QpAttr.builder().state(QpState.RTS).sqPsn(0).build());
            return;
        }
        if (type == QpType.UC) {
            qp.modify(QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1)
                    .accessFlags(Access.LOCAL_WRITE | Access.REMOTE_WRITE).build());
            qp.modify(QpAttr.builder().state(QpState.RTR).av(AhAttr.roce(peerGid, 1, 1))
                    .pathMtu(ctx.queryPort(1).activeMtu()).destQpn(peer.qpNum()).rqPsn(0).build());
            qp.modify(QpAttr.builder().state(QpState.RTS).sqPsn(0).build());
            return;
        }
        int rdAtomic = Math.max(1, Math.min(16, ctx.queryDevice().maxQpRdAtom()));
        qp.modify(QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1).accessFlags(ALL).build());
        qp.modify(QpAttr.builder().state(QpState.RTR).av(AhAttr.roce(peerGid, 1, 1))
                .pathMtu(ctx.queryPort(1).activeMtu()).destQpn(peer.qpNum()).rqPsn(0)
                .maxDestRdAtomic(rdAtomic).minRnrTimer(1).build());
        qp.modify(QpAttr.builder().state(QpState.RTS).sqPsn(0).timeout(14).retryCnt(7).rnrRetry(7)
                .maxRdAtomic(rdAtomic).build());
    }

    // ---------------------------------------------------------------- bandwidth

    private static PerfResult.Bw bw(PerfConfig cfg, Side c, Side s, BeforeCheck beforeCheck) {
        Flow f = flow(cfg, c, s);
        beforeCheck.run(cfg, c, s);
        verify(cfg, c, s, f);
        return f.row(cfg);
    }

    /**
     * {@code -b}: both ends send at once, each from a thread of its own over the same QPs (RC QPs carry both
     * directions), and the row sums both directions, as perftest's duplex report does. The bytes of both are checked
     * once both ended.
     */
    private static PerfResult.Bw bidirectional(PerfConfig cfg, Side c, Side s, BeforeCheck beforeCheck) {
        AtomicReference<Flow> back = new AtomicReference<>();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread server = Thread.ofPlatform().name("perftest-" + s.name).start(() -> {
            try {
                back.set(flow(cfg, s, c));
            } catch (Throwable e) {
                failure.set(e);
            }
        });
        Flow there;
        try {
            there = flow(cfg, c, s);
        } finally {
            join(server);
        }
        rethrow(failure);
        Flow home = back.get();
        beforeCheck.run(cfg, c, s);
        verify(cfg, c, s, there);
        verify(cfg, s, c, home);
        long iters = there.iters + home.iters;
        double rate = there.iters / there.secs + home.iters / home.secs;
        double peak = Math.max(there.peak + home.peak, rate * cfg.size());
        return new PerfResult.Bw(cfg.size(), iters, unit(cfg, peak), unit(cfg, rate * cfg.size()), rate / 1e6);
    }

    /**
     * One direction's bandwidth run, {@code c} posting to {@code s}: what it did in the measured part and what the
     * byte check needs.
     */
    private record Flow(long iters, double secs, double peak, byte[][] pattern, long[] completed) {
        PerfResult.Bw row(PerfConfig cfg) {
            double avg = iters * (double) cfg.size() / secs;
            return new PerfResult.Bw(cfg.size(), iters, unit(cfg, Math.max(peak, avg)), unit(cfg, avg), iters / secs / 1e6);
        }
    }

    private static Flow flow(PerfConfig cfg, Side c, Side s) {
        int size = cfg.size();
        int nq = cfg.qps();
        byte[][] pattern = new byte[nq][];
        for (int q = 0; q < nq; q++) {
            pattern[q] = random(size, 31L * size + (s.srq != null ? 0 : q)); // with an SRQ, any buffer may get any QP's
            switch (cfg.test()) {
                case WRITE_BW, SEND_BW -> {
                    c.write(c.src(q), pattern[q]);
                    s.write(s.dst(q), new byte[size]);
                }
                case READ_BW -> {
                    s.write(s.src(q), pattern[q]);
                    c.write(c.dst(q), new byte[size]);
                }
                default -> s.write(s.dst(q), new byte[8]);
            }
        }
        long[] posted = new long[nq];
        long[] completed = new long[nq];
        long[] target = new long[nq];
        long[] recvPosted = new long[nq];
        long[] received = new long[nq];
        boolean timed = cfg.duration() > 0;
        Arrays.fill(target, timed ? Long.MAX_VALUE : cfg.iterations());
        if (cfg.test() == PerfConfig.Test.SEND_BW) {
            for (int q = 0; q < nq; q++) {
                postRecvs(s, q, s.recvTarget - s.recvsWaiting[rq(s, q)]); // what an earlier size left is still there
                recvPosted[q] = s.recvsWaiting[q];
            }
        }
        int mod = cfg.cqMod();
        // send_bw never has more sends outstanding than the receiver has receives posted: UC and UD would drop the
        // rest, and RC would meet RNR NAKs and wait for the RNR timer (with several QPs, that was most of the run)
        boolean credits = cfg.test() == PerfConfig.Test.SEND_BW;
        long start = System.nanoTime();
        long deadline = start + cfg.duration() * 1_000_000_000L;
        long margin = marginNanos(cfg.duration());
        long sampleFrom = start + margin;
        long sampleTo = deadline - margin;
        long fromTime = margin > 0 ? -1 : start;
        long fromDone = 0;
        long toTime = -1;
        long toDone = 0;
        long lastProgress = start;
        long lastTime = start;
        long lastDone = 0;
        double peak = 0;
        List<SendWr> batch = new ArrayList<>(cfg.txDepth());
        // as perftest, the work requests are built once and posted again and again: per QP, one per send queue
        // slot, unsignaled and signaled; a signaled one's completion tells how many were done (they complete in order)
        int depth = cfg.txDepth();
        SendWr[][][] wrs = new SendWr[nq][2][depth];
        // the next slot, and how many more until the next signaled one, per QP (counters: no division per request)
        int[] nextSlot = new int[nq];
        int[] toSignal = new int[nq];
        Arrays.fill(toSignal, mod);
        // the signaled requests in flight, oldest first: a ring of (request number) per QP
        long[][] signaledAt = new long[nq][depth];
        int[] sigHead = new int[nq];
        int[] sigTail = new int[nq];
        int pendingSignaled = 0; // signaled requests posted and not completed yet, over all QPs
        for (int q = 0; q < nq; q++) {
            List<Sge> sgl = sgl(cfg, c, q);
            for (int slot = 0; slot < depth; slot++) {
                wrs[q][0][slot] = wr(cfg, sgl, c, s, q, slot, inline(cfg));
                wrs[q][1][slot] = wr(cfg, sgl, c, s, q, slot, SendFlags.SIGNALED | inline(cfg));
            }
        }
        while (true) {
            long now = System.nanoTime();
            if (timed && now - deadline >= 0) {
                for (int q = 0; q < nq; q++) {
                    if (target[q] == Long.MAX_VALUE) {
                        target[q] = Math.max(mod, roundUp(posted[q], mod)); // the last posted one is signaled
                    }
                }
            }
            boolean done = true;
            for (int q = 0; q < nq; q++) {
                if (completed[q] < target[q]) {
                    done = false;
                }
                // as perftest's run_iter_bw: whole post lists (-l) while they fit the send queue, each one postSend
                // and one doorbell; the last list of a counted run may be short
                while (true) {
                    long room = cfg.txDepth() - (posted[q] - completed[q]);
                    if (credits) {
                        room = Math.min(room, s.srq != null ? sum(recvPosted) - sum(posted) : recvPosted[q] - posted[q]);
                    }
                    long list = Math.min(cfg.postList(), target[q] - posted[q]);
                    if (list <= 0 || room < list) {
                        break;
                    }
                    batch.clear();
                    for (long i = posted[q]; i < posted[q] + list; i++) {
                        boolean signaled = --toSignal[q] == 0 || i + 1 == target[q];
                        if (toSignal[q] == 0) {
                            toSignal[q] = mod;
                        }
                        batch.add(wrs[q][signaled ? 1 : 0][nextSlot[q]]);
                        if (++nextSlot[q] == depth) {
                            nextSlot[q] = 0;
                        }
                        if (signaled) {
                            pendingSignaled++;
                            signaledAt[q][sigTail[q]] = i;
                            if (++sigTail[q] == depth) {
                                sigTail[q] = 0;
                            }
                        }
                    }
                    c.qps[q].postSend(batch);
                    posted[q] += list;
                }
            }
            if (done) {
                break;
            }
            List<WorkCompletion> wcs = c.cq.poll(64);
            for (WorkCompletion wc : wcs) {
                check(wc);
                int q = (int) (wc.wrId() >>> 40);
                pendingSignaled--;
                long at = signaledAt[q][sigHead[q]];
                if (++sigHead[q] == depth) {
                    sigHead[q] = 0;
                }
                if ((wc.wrId() & ((1L << 40) - 1)) != at % depth) { // once per signaled completion
                    throw new ErrnoException(Errno.EIO, "perftest: QP " + q + " completed work request " + wc.wrId()
                            + " where the next signaled one is slot " + at % depth);
                }
                completed[q] = at + 1;
            }
            if (cfg.test() == PerfConfig.Test.SEND_BW) { // every receive that completed is posted again
                List<WorkCompletion> rw;
                while (!(rw = s.rcq.poll(64)).isEmpty()) {
                    for (WorkCompletion wc : rw) {
                        check(wc);
                        int q = (int) (wc.wrId() >>> 40);
                        received[q]++;
                        s.recvsWaiting[q]--;
                        postRecvs(s, q, 1);
                        recvPosted[q]++;
                    }
                }
            }
            now = System.nanoTime();
            if (timed && fromTime < 0 && now - sampleFrom >= 0) {
                fromTime = lastTime = now;
                fromDone = lastDone = sum(completed);
            }
            if (timed && fromTime >= 0 && toTime < 0 && now - sampleTo >= 0) {
                toTime = now;
                toDone = sum(completed);
            }
            boolean sampling = fromTime >= 0 && toTime < 0;
            if (!wcs.isEmpty()) {
                long total = sum(completed);
                if (sampling && now - lastTime > 200_000) { // peak over windows of at least 0.2 ms
                    peak = Math.max(peak, (double) (total - lastDone) * size / ((now - lastTime) / 1e9));
                    lastTime = now;
                    lastDone = total;
                }
                lastProgress = now;
            } else if (now - lastProgress > STALL_NS) {
                throw new ErrnoException(Errno.ETIMEDOUT, "perftest: " + cfg.test().tool + " stalled at "
                        + Arrays.toString(completed) + " of " + Arrays.toString(target) + " completions");
            } else if (c.channel != null && pendingSignaled > 0) {
                awaitEvent(c, cfg, null); // -e: sleep until the CQ reports (a signaled request is on its way)
            } else {
                Thread.yield(); // the HCAs are threads of this machine too: give them the CPU while nothing completes
            }
        }
        long end = System.nanoTime();
        if (fromTime < 0) { // the run ended before a poll saw the window open
            fromTime = start;
            fromDone = 0;
        }
        if (toTime < 0) { // counted runs, and timed ones that ended before a poll saw the window close
            toTime = end;
            toDone = sum(completed);
        }
        long iters = toDone - fromDone;
        if (cfg.test() == PerfConfig.Test.SEND_BW) {
            long want = sum(posted);
            while (sum(received) < want) {
                for (WorkCompletion wc : s.rcq.poll(64)) {
                    check(wc);
                    int q = (int) (wc.wrId() >>> 40);
                    received[q]++;
                    s.recvsWaiting[q]--;
                }
                if (System.nanoTime() - end > STALL_NS) {
                    throw new ErrnoException(Errno.ETIMEDOUT, "perftest: send_bw received " + sum(received) + " of " + want);
                }
            }
        }
        double secs = (toTime - fromTime) / 1e9;
        return new Flow(iters, secs, peak, pattern, completed);
    }

    /**
     * perftest's duration mode measures the middle of the run only: a margin of a quarter of the duration, in
     * whole seconds, is left out at either end (its START, SAMPLE and STOP_SAMPLE states); none without one.
     */
    static long marginNanos(int durationSecs) {
        return durationSecs / 4 * 1_000_000_000L;
    }

    /** {@code IBV_SEND_INLINE} when the message fits {@code -I}. */
    private static int inline(PerfConfig cfg) {
        return cfg.size() <= cfg.inlineSize() ? SendFlags.INLINE : 0;
    }

    /** The one scatter/gather list every work request of QP {@code q} uses, built once as perftest builds its SGE. */
    private static List<Sge> sgl(PerfConfig cfg, Side c, int q) {
        return switch (cfg.test()) {
            case WRITE_BW, SEND_BW -> List.of(c.sge(c.src(q), cfg.size()));
            case READ_BW -> List.of(c.sge(c.dst(q), cfg.size()));
            case ATOMIC_BW -> List.of(c.sge(c.src(q), 8)); // the fetched values; dst(q) is this end's counter
            default -> throw new IllegalStateException();
        };
    }

    private static SendWr wr(PerfConfig cfg, List<Sge> sgl, Side c, Side s, int q, long i, int flags) {
        long id = ((long) q << 40) | i;
        int rkey = s.mr.rkey();
        return switch (cfg.test()) {
            case WRITE_BW -> new SendWr.RdmaWrite(id, sgl, flags, s.dst(q), rkey);
            case READ_BW -> new SendWr.RdmaRead(id, sgl, flags, s.src(q), rkey);
            case SEND_BW -> new SendWr.Send(id, sgl, flags, ud(cfg, c, s, q));
            case ATOMIC_BW -> new SendWr.AtomicFetchAndAdd(id, sgl, flags, s.dst(q), rkey, 1);
            default -> throw new IllegalStateException();
        };
    }

    /**
     * The receive queue QP {@code q} of {@code s} takes its receives from, as an index: its own, or 0 for all with
     * an SRQ (whose receives all use QP 0's region: any QP's message may land in any of them).
     */
    private static int rq(Side s, int q) {
        return s.srq != null ? 0 : q;
    }

    /** Posts {@code n} receives for {@code s}'s QP {@code q} (on its SRQ, if any), each over a whole receive region. */
    private static void postRecvs(Side s, int q, int n) {
        if (n <= 0) {
            return;
        }
        int r = rq(s, q);
        List<RecvWr> l = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            l.add(RecvWr.of(((long) r << 40) | i, s.sge(s.dst(r), (int) s.region)));
        }
        if (s.srq != null) {
            s.srq.postRecv(l);
        } else {
            s.qps[q].postRecv(l);
        }
        s.recvsWaiting[r] += n;
    }

    /** The byte check of the flow {@code c} posted to {@code s}. */
    private static void verify(PerfConfig cfg, Side c, Side s, Flow f) {
        byte[][] pattern = f.pattern();
        long[] completed = f.completed();
        for (int q = 0; q < cfg.qps(); q++) {
            switch (cfg.test()) {
                case WRITE_BW -> same(cfg, q, pattern[q], s.read(s.dst(q), cfg.size()), "target buffer on " + s.name);
                case SEND_BW -> same(cfg, q, pattern[q], s.read(s.dst(rq(s, q)) + grh(cfg), cfg.size()), "target buffer on " + s.name);
                case READ_BW -> same(cfg, q, pattern[q], c.read(c.dst(q), cfg.size()), "read buffer on " + c.name);
                case ATOMIC_BW -> {
                    long v = MemorySegment.ofArray(s.read(s.dst(q), 8)).get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
                    if (v != completed[q]) {
                        throw new ErrnoException(Errno.EIO, "perftest: atomic_bw QP " + q + ": counter on " + s.name
                                + " is " + v + " after " + completed[q] + " fetch-and-adds of 1");
                    }
                }
                default -> throw new IllegalStateException();
            }
        }
    }

    private static void same(PerfConfig cfg, int q, byte[] want, byte[] got, String what) {
        int i = Arrays.mismatch(want, got);
        if (i >= 0) {
            throw new ErrnoException(Errno.EIO, "perftest: " + cfg.test().tool + " size " + cfg.size() + " QP " + q
                    + ": " + what + " differs from the source at byte " + i);
        }
    }

    // ---------------------------------------------------------------- latency

    private static byte tag(long i) {
        return (byte) (i % 255 + 1);
    }

    private static PerfResult.Lat writeLat(PerfConfig cfg, Side c, Side s, BeforeCheck beforeCheck) {
        int size = cfg.size();
        byte[] pc = random(size, 7L * size), ps = random(size, 11L * size);
        c.write(c.src(0), pc);
        s.write(s.src(0), ps);
        c.write(c.dst(0), new byte[size]);
        s.write(s.dst(0), new byte[size]);
        QueuePair qc = c.qps[0], qs = s.qps[0];
        int rkeyC = c.mr.rkey(), rkeyS = s.mr.rkey();
        Ping ping = new Ping(cfg);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread server = Thread.ofPlatform().name("perftest-server").start(() -> {
            try {
                for (long i = 0; ; i++) {
                    byte t = tag(i);
                    if (!waitByte(s, s.dst(0), size, t, ping)) {
                        return;
                    }
                    s.write(s.src(0) + size - 1, new byte[]{t});
                    qs.postSend(List.of(new SendWr.RdmaWrite(i, List.of(s.sge(s.src(0), size)), SendFlags.SIGNALED | inline(cfg),
                            c.dst(0), rkeyC)));
                    waitCq(s, 1, ping);
                }
            } catch (Throwable e) {
                failure.set(e);
                ping.stop = true;
            }
        });
        long i = 0;
        try {
            for (; ping.more(i); i++) {
                byte t = tag(i);
                c.write(c.src(0) + size - 1, new byte[]{t});
                long t0 = System.nanoTime();
                qc.postSend(List.of(new SendWr.RdmaWrite(i, List.of(c.sge(c.src(0), size)), SendFlags.SIGNALED | inline(cfg),
                        s.dst(0), rkeyS)));
                if (!waitByte(c, c.dst(0), size, t, ping)) {
                    break;
                }
                ping.add((System.nanoTime() - t0) / 2);
                waitCq(c, 1, ping);
            }
        } finally {
            ping.stop = true;
            join(server);
        }
        rethrow(failure);
        pc[size - 1] = tag(i - 1);
        ps[size - 1] = tag(i - 1);
        beforeCheck.run(cfg, c, s);
        same(cfg, 0, pc, s.read(s.dst(0), size), "target buffer on " + SERVER);
        same(cfg, 0, ps, c.read(c.dst(0), size), "target buffer on " + CLIENT);
        return ping.stats(size);
    }

    /**
     * ib_atomic_lat: one FETCH_AND_ADD of 1 at a time on the server's counter, the whole round trip timed. Each
     * returns the counter before its add, checked once the sample is taken; the counter ends at the number done.
     */
    private static PerfResult.Lat atomicLat(PerfConfig cfg, Side c, Side s, BeforeCheck beforeCheck) {
        s.write(s.dst(0), new byte[8]);
        Ping ping = new Ping(cfg);
        long done = 0;
        for (long i = 0; ping.more(i); i++) {
            long t0 = System.nanoTime();
            c.qps[0].postSend(List.of(new SendWr.AtomicFetchAndAdd(i, List.of(c.sge(c.dst(0), 8)), SendFlags.SIGNALED,
                    s.dst(0), s.mr.rkey(), 1)));
            waitCq(c, 1, ping);
            ping.add(System.nanoTime() - t0);
            long before = MemorySegment.ofArray(c.read(c.dst(0), 8)).get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
            if (before != i) {
                throw new ErrnoException(Errno.EIO, "perftest: atomic_lat fetch-and-add " + i + " returned " + before
                        + ", not the " + i + " adds before it");
            }
            done = i + 1;
        }
        beforeCheck.run(cfg, c, s);
        long v = MemorySegment.ofArray(s.read(s.dst(0), 8)).get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
        if (v != done) {
            throw new ErrnoException(Errno.EIO, "perftest: atomic_lat: counter on " + SERVER + " is " + v + " after "
                    + done + " fetch-and-adds of 1");
        }
        return ping.stats(8);
    }

    private static PerfResult.Lat readLat(PerfConfig cfg, Side c, Side s, BeforeCheck beforeCheck) {
        int size = cfg.size();
        byte[] ps = random(size, 13L * size);
        s.write(s.src(0), ps);
        c.write(c.dst(0), new byte[size]);
        Ping ping = new Ping(cfg);
        for (long i = 0; ping.more(i); i++) {
            long t0 = System.nanoTime();
            c.qps[0].postSend(List.of(new SendWr.RdmaRead(i, List.of(c.sge(c.dst(0), size)), SendFlags.SIGNALED,
                    s.src(0), s.mr.rkey())));
            waitCq(c, 1, ping);
            ping.add(System.nanoTime() - t0);
        }
        beforeCheck.run(cfg, c, s);
        same(cfg, 0, ps, c.read(c.dst(0), size), "read buffer on " + CLIENT);
        return ping.stats(size);
    }

    private static PerfResult.Lat sendLat(PerfConfig cfg, Side c, Side s, BeforeCheck beforeCheck) {
        int size = cfg.size();
        byte[] pc = random(size, 17L * size), ps = random(size, 19L * size);
        c.write(c.src(0), pc);
        s.write(s.src(0), ps);
        QueuePair qc = c.qps[0], qs = s.qps[0];
        postRecvs(c, 0, 4 - c.recvsWaiting[0]); // what an earlier size left is still there
        postRecvs(s, 0, 4 - s.recvsWaiting[0]);
        Ping ping = new Ping(cfg);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread server = Thread.ofPlatform().name("perftest-server").start(() -> {
            try {
                int sends = 0;
                for (long i = 0; ; i++) {
                    if (!waitRecv(s, ping)) {
                        return;
                    }
                    s.recvsWaiting[0]--;
                    postRecvs(s, 0, 1);
                    qs.postSend(List.of(new SendWr.Send(i, List.of(s.sge(s.src(0), size)), SendFlags.SIGNALED | inline(cfg),
                            ud(cfg, s, c, 0))));
                }
            } catch (Throwable e) {
                failure.set(e);
                ping.stop = true;
            }
        });
        try {
            for (long i = 0; ping.more(i); i++) {
                long t0 = System.nanoTime();
                qc.postSend(List.of(new SendWr.Send(i, List.of(c.sge(c.src(0), size)), SendFlags.SIGNALED | inline(cfg),
                        ud(cfg, c, s, 0))));
                if (!waitRecv(c, ping)) {
                    break;
                }
                ping.add((System.nanoTime() - t0) / 2);
                c.recvsWaiting[0]--;
                postRecvs(c, 0, 1);
            }
        } finally {
            ping.stop = true;
            join(server);
        }
        rethrow(failure);
        beforeCheck.run(cfg, c, s);
        same(cfg, 0, pc, s.read(s.dst(0) + grh(cfg), size), "receive buffer on " + SERVER);
        same(cfg, 0, ps, c.read(c.dst(0) + grh(cfg), size), "receive buffer on " + CLIENT);
        return ping.stats(size);
    }

    /** Latency samples and when to stop (iterations or duration; either side failing). */
    private static final class Ping {
        final PerfConfig cfg;
        final long deadline;
        volatile boolean stop;
        long[] ns = new long[1024];
        int n;
        int pendingSends;

        Ping(PerfConfig cfg) {
            this.cfg = cfg;
            deadline = System.nanoTime() + cfg.duration() * 1_000_000_000L;
        }

        boolean more(long i) {
            if (stop) {
                return false;
            }
            return cfg.duration() > 0 ? System.nanoTime() - deadline < 0 : i < cfg.iterations();
        }

        void add(long v) {
            if (n == ns.length) {
                ns = Arrays.copyOf(ns, n * 2);
            }
            ns[n++] = v;
        }

        PerfResult.Lat stats(int size) {
            if (n == 0) {
                throw new ErrnoException(Errno.EIO, "perftest: " + cfg.test().tool + " measured nothing");
            }
            long[] v = Arrays.copyOf(ns, n);
            Arrays.sort(v);
            double sum = 0;
            for (long x : v) {
                sum += x;
            }
            double avg = sum / n;
            double var = 0;
            for (long x : v) {
                var += (x - avg) * (x - avg);
            }
            return new PerfResult.Lat(size, n, v[0] / 1e3, v[n - 1] / 1e3, v[n / 2] / 1e3, avg / 1e3,
                    Math.sqrt(var / n) / 1e3, pct(v, 0.99) / 1e3, pct(v, 0.999) / 1e3);
        }

        private static long pct(long[] sorted, double p) {
            int i = (int) Math.ceil(p * sorted.length) - 1;
            return sorted[Math.max(0, Math.min(sorted.length - 1, i))];
        }
    }

    private static boolean waitByte(Side side, long addr, int size, byte t, Ping ping) {
        long start = System.nanoTime();
        int spins = 0;
        while (side.lastByte(addr, size) != t) {
            if (ping.stop) {
                return false;
            }
            if (System.nanoTime() - start > STALL_NS) {
                throw new ErrnoException(Errno.ETIMEDOUT, "perftest: " + ping.cfg.test().tool + " no data arrived");
            }
            idle(spins++);
        }
        return true;
    }

    /** Polls until {@code n} send completions came (receive completions are not expected here). */
    private static void waitCq(Side side, int n, Ping ping) {
        CompletionQueue cq = side.cq;
        long start = System.nanoTime();
        int got = 0;
        int spins = 0;
        while (got < n) {
            for (WorkCompletion wc : cq.poll(n - got)) {
                check(wc);
                got++;
            }
            if (got < n && System.nanoTime() - start > STALL_NS) {
                throw new ErrnoException(Errno.ETIMEDOUT, "perftest: " + ping.cfg.test().tool + " no completion");
            }
            if (got < n) { // the poll took all there was
                if (side.channel != null) {
                    awaitEvent(side, ping.cfg, ping);
                } else {
                    idle(spins++);
                }
            }
        }
    }

    /**
     * {@code -e}: sleeps until {@code side}'s CQ reports a completion ({@code ibv_get_cq_event}), acknowledges the
     * event and arms the CQ again (perftest's {@code ctx_notify_events}). Call it only after a poll found the CQ
     * empty: a completion that came after the last arming raised an event, and one that came before it is found
     * by the poll that follows.
     */
    private static void awaitEvent(Side side, PerfConfig cfg, Ping ping) {
        long deadline = System.nanoTime() + STALL_NS;
        Optional<CompletionQueue> ev;
        // in slices, so that a ping-pong's other end, told to stop, does not sleep out the whole stall time
        while ((ev = side.channel.getCqEvent(EVENT_SLICE)).isEmpty()) {
            if (ping != null && ping.stop) {
                return;
            }
            if (System.nanoTime() - deadline > 0) {
                throw new ErrnoException(Errno.ETIMEDOUT, "perftest: " + cfg.test().tool + ": no completion event on "
                        + side.name + " within " + STALL_NS / 1_000_000_000L + " s");
            }
        }
        ev.get().ackEvents(1);
        ev.get().reqNotify(false);
    }

    /** How long one wait for a completion event lasts before the waiter looks whether it should stop. */
    private static final Duration EVENT_SLICE = Duration.ofMillis(5);

    /** Polls until one receive completes; send completions on the way are checked and dropped. */
    private static boolean waitRecv(Side side, Ping ping) {
        long start = System.nanoTime();
        int spins = 0;
        while (true) {
            List<WorkCompletion> wcs = side.cq.poll(1);
            for (WorkCompletion wc : wcs) {
                check(wc);
                if (wc.opcode() == WcOpcode.RECV) {
                    return true;
                }
            }
            if (ping.stop) {
                return false;
            }
            if (System.nanoTime() - start > STALL_NS) {
                throw new ErrnoException(Errno.ETIMEDOUT, "perftest: " + ping.cfg.test().tool + " no message arrived");
            }
            if (!wcs.isEmpty()) {
                continue; // a send completion: more may be waiting, and their events may have gone with it
            }
            if (side.channel != null) {
                awaitEvent(side, ping.cfg, ping);
            } else {
                idle(spins++);
            }
        }
    }

    /** Polls that find nothing spin before the poller starts giving its CPU away. */
    static final int SPINS_BEFORE_YIELD = 4096;

    /**
     * Between two polls that found nothing: busy-polls as perftest does (the soft HCAs run in the threads that post
     * to them), and only after {@link #SPINS_BEFORE_YIELD} polls yields the CPU each time, for an engine's timer
     * thread or the other side when they share a CPU.
     */
    private static void idle(int spins) {
        if (spins < SPINS_BEFORE_YIELD) {
            Thread.onSpinWait();
        } else {
            Thread.yield();
        }
    }

    private static void check(WorkCompletion wc) {
        if (!wc.isSuccess()) {
            throw new ErrnoException(Errno.EIO, "perftest: work completion failed: " + wc);
        }
    }

    private static void join(Thread t) {
        try {
            t.join(STALL_NS / 1_000_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void rethrow(AtomicReference<Throwable> failure) {
        Throwable t = failure.get();
        if (t instanceof RuntimeException r) {
            throw r;
        }
        if (t != null) {
            throw new ErrnoException(Errno.EIO, "perftest: server side failed: " + t, t);
        }
    }

    // ---------------------------------------------------------------- report

    static final String LINE = "-".repeat(87);

    static String columns(PerfConfig cfg) {
        if (cfg.test().latency) {
            return " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]"
                    + "   99% percentile[usec]   99.9% percentile[usec] ";
        }
        String u = cfg.reportGbits() ? "Gb/sec" : "MB/sec";
        return " #bytes     #iterations    BW peak[" + u + "]    BW average[" + u + "]   MsgRate[Mpps]";
    }

    private static String header(PerfConfig cfg, Side c, Side s) {
        StringBuilder b = new StringBuilder();
        b.append(LINE).append('\n');
        String title = cfg.bidirectional() ? cfg.test().title.replace(" BW Test", " Bidirectional BW Test") : cfg.test().title;
        b.append(" ".repeat(Math.max(0, (87 - title.length()) / 2))).append(title).append('\n');
        b.append(String.format(" Device         : %s -> %s%n", CLIENT, SERVER));
        b.append(String.format(" Number of qps  : %d\t\tTransport type : IB%n", cfg.qps()));
        b.append(String.format(" Connection type: %s\t\tUsing SRQ      : %s%n", cfg.connection(), cfg.srq() ? "ON" : "OFF"));
        b.append(String.format(" TX depth       : %d%n", cfg.txDepth()));
        if (!cfg.test().latency) {
            b.append(String.format(" CQ Moderation  : %d%n", cfg.cqMod()));
            if (cfg.postList() > 1) {
                b.append(String.format(" Post List      : %d%n", cfg.postList()));
            }
        }
        b.append(String.format(" Mtu            : %d[B]%n", c.ctx.queryPort(1).activeMtu().bytes()));
        if (cfg.inlineSize() > 0) {
            b.append(String.format(" Max inline data : %d[B]%n", cfg.inlineSize()));
        }
        b.append(" Link type      : Ethernet\n");
        b.append(String.format(" GID index      : 1%n"));
        for (int q = 0; q < cfg.qps(); q++) {
            b.append(String.format(" local address: QPN 0x%04x PSN 0x000000 GID: %s%n", c.qps[q].qpNum(), c.gid));
            b.append(String.format(" remote address: QPN 0x%04x PSN 0x000000 GID: %s%n", s.qps[q].qpNum(), s.gid));
        }
        b.append(LINE).append('\n');
        b.append(columns(cfg)).append('\n');
        return b.toString();
    }

    static String format(PerfConfig cfg, PerfResult.Row row) {
        return switch (row) {
            case PerfResult.Bw bw -> String.format(" %-10d %-10d     %-18.2f %-18.2f   %.6f", bw.bytes(), bw.iterations(),
                    bw.bwPeak(), bw.bwAverage(), bw.msgRateMpps());
            case PerfResult.Lat l -> String.format(" %-7d %-10d %-14.2f %-14.2f %-16.2f %-14.2f %-16.2f %-22.2f %.2f",
                    l.bytes(), l.iterations(), l.tMin(), l.tMax(), l.tTypical(), l.tAvg(), l.tStdev(), l.p99(), l.p999());
        };
    }

    private static double unit(PerfConfig cfg, double bytesPerSec) {
        return cfg.reportGbits() ? bytesPerSec * 8 / 1e9 : bytesPerSec / MB;
    }

    private static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    private static long sum(long[] a) {
        long s = 0;
        for (long x : a) {
            s += x;
        }
        return s;
    }

    private static long roundUp(long v, long m) {
        return (v + m - 1) / m * m;
    }
}
