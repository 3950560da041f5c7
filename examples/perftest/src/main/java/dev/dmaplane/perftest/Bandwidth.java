package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WorkCompletion;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

import static dev.dmaplane.perftest.Perftest.*;

/**
 * The bandwidth tools ({@code ib_write_bw}, {@code ib_read_bw}, {@code ib_send_bw}, {@code ib_atomic_bw}): one flow
 * of work requests from one end to the other, or two at once with {@code -b}, measured as perftest measures them and
 * byte-checked at the end.
 */
final class Bandwidth {
    private Bandwidth() {
    }

    static PerfResult.Bw bw(PerfConfig cfg, Side c, Side s, BeforeCheck beforeCheck) {
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
    static PerfResult.Bw bidirectional(PerfConfig cfg, Side c, Side s, BeforeCheck beforeCheck) {
        OtherEnd<Flow> server = OtherEnd.start("perftest-" + s.name, () -> flow(cfg, s, c), () -> {
        });
        Flow there;
        try {
            there = flow(cfg, c, s);
        } finally {
            server.join();
        }
        Flow home = server.result();
        beforeCheck.run(cfg, c, s);
        verify(cfg, c, s, there);
        verify(cfg, s, c, home);
        long iters = there.iters + home.iters;
        double rate = there.iters / there.secs + home.iters / home.secs;
        double peak = cfg.measuresPeak() ? Math.max(there.peak + home.peak, rate * cfg.size()) : 0;
        return new PerfResult.Bw(cfg.size(), iters, unit(cfg, peak), unit(cfg, rate * cfg.size()), rate / 1e6);
    }

    /**
     * One direction's bandwidth run, {@code c} posting to {@code s}: what it did in the measured part and what the
     * byte check needs.
     */
    record Flow(long iters, double secs, double peak, byte[][] pattern, long[] completed) {
        PerfResult.Bw row(PerfConfig cfg) {
            double avg = iters * (double) cfg.size() / secs;
            double top = cfg.measuresPeak() ? Math.max(peak, avg) : 0; // perftest prints 0 when it measures none
            return new PerfResult.Bw(cfg.size(), iters, unit(cfg, top), unit(cfg, avg), iters / secs / 1e6);
        }
    }

    static Flow flow(PerfConfig cfg, Side c, Side s) {
        byte[][] pattern = patterns(cfg, s.sharedRq());
        prepareTarget(cfg, s, pattern);
        return flow(cfg, c, s, s, pattern);
    }

    /** Each QP's bytes for one size: the same on both ends of a run, in one process or two. */
    static byte[][] patterns(PerfConfig cfg, boolean sharedRq) {
        int size = cfg.size();
        byte[][] pattern = new byte[cfg.qps()][];
        for (int q = 0; q < pattern.length; q++) {
            pattern[q] = random(size, 31L * size + (sharedRq ? 0 : q)); // with an SRQ, any buffer may get any QP's
        }
        return pattern;
    }

    /** The target end's buffers before a size: cleared where the flow writes, the pattern where READs read. */
    static void prepareTarget(PerfConfig cfg, Side s, byte[][] pattern) {
        for (int q = 0; q < cfg.qps(); q++) {
            switch (cfg.test()) {
                case WRITE_BW, SEND_BW -> s.write(s.dst(q), new byte[cfg.size()]);
                case READ_BW -> s.write(s.src(q), pattern[q]);
                default -> s.write(s.dst(q), new byte[8]);
            }
        }
    }

    /** How long a bandwidth poller that finds nothing yields its CPU at each poll before it starts to sleep. */
    static final long YIELD_NS = TimeUnit.MICROSECONDS.toNanos(200);

    /**
     * Between two polls that found nothing, {@code idleNanos} after the last completion, receive or post: yields the
     * CPU at each poll for {@link #YIELD_NS}, then sleeps for an eighth of the wait so far (plus the kernel's timer
     * slack) between polls. perftest busy-polls, which costs a hardware HCA nothing; the soft HCAs here are threads
     * on the poller's cores, and a poller that only yielded still took 3.8 s of CPU in 4 s from them in write_bw
     * 64 KiB between processes on two cores. A bandwidth test's window is deep (128 requests, one signaled per 100):
     * while the poller sleeps the HCA works through what is posted, and a poll an eighth of the wait late still finds
     * requests queued. The waits of small messages' completions end before the sleep starts.
     */
    static void idleInWindow(long idleNanos) {
        if (idleNanos < YIELD_NS) {
            Thread.yield();
        } else {
            LockSupport.parkNanos(idleNanos / 8);
        }
    }

    /**
     * One direction's bandwidth run from {@code c} to the far end {@code s}, whose buffers are prepared; {@code
     * receiver} is that end when it is in this process (send_bw's receives are then reposted here, and never fewer
     * are posted than sends outstanding), null when another process receives (its RC QPs answer an empty receive
     * queue with RNR NAKs, which the requester retries as perftest's client does).
     */
    static Flow flow(PerfConfig cfg, Side c, Far s, Side receiver, byte[][] pattern) {
        int size = cfg.size();
        int nq = cfg.qps();
        for (int q = 0; q < nq; q++) {
            switch (cfg.test()) {
                case WRITE_BW, SEND_BW -> c.write(c.src(q), pattern[q]);
                case READ_BW -> c.write(c.dst(q), new byte[size]);
                default -> {
                }
            }
        }
        long[] posted = new long[nq];
        long[] completed = new long[nq];
        long[] target = new long[nq];
        long[] recvPosted = new long[nq];
        long[] received = new long[nq];
        boolean timed = cfg.duration() > 0;
        Arrays.fill(target, timed ? Long.MAX_VALUE : cfg.iterations());
        boolean receives = cfg.test() == PerfConfig.Test.SEND_BW && receiver != null;
        if (receives) {
            for (int q = 0; q < nq; q++) {
                postRecvs(receiver, q, receiver.recvTarget - receiver.recvsWaiting[rq(receiver, q)]); // an earlier size's are still there
                recvPosted[q] = receiver.recvsWaiting[q];
            }
        }
        int mod = cfg.cqMod();
        // send_bw never has more sends outstanding than the receiver has receives posted: UC and UD would drop the
        // rest, and RC would meet RNR NAKs and wait for the RNR timer (with several QPs, that was most of the run)
        boolean credits = receives;
        // across processes iWARP has no RNR NAK either (a SEND without a receive ends the QP with a TERMINATE): the
        // receiving process hands out credits as perftest's send_rcredit does
        boolean remoteCredits = Credits.apply(cfg, c) && receiver == null;
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
        long idleSince = start; // the last poll that found a completion, or the last post
        // perftest's tposted/tcompleted: when each work request was posted, and when the completion that covered
        // it up to there was seen (one entry per signaled completion), over all QPs; for the peak of a counted run
        boolean peakOn = cfg.measuresPeak();
        int all = peakOn ? cfg.iterations() * nq : 0;
        long[] tposted = peakOn ? new long[all] : null;
        long[] tcompleted = peakOn ? new long[all] : null;
        int totPosted = 0;
        int totCompleted = 0;
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
                        room = Math.min(room, s.sharedRq() ? sum(recvPosted) - sum(posted) : recvPosted[q] - posted[q]);
                    }
                    if (remoteCredits) {
                        room = Math.min(room, Credits.room(c, s.sharedRq(), q));
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
                    if (peakOn) {
                        Arrays.fill(tposted, totPosted, totPosted + (int) list, System.nanoTime());
                        totPosted += (int) list;
                    }
                    c.qps[q].postSend(batch);
                    idleSince = System.nanoTime();
                    posted[q] += list;
                    c.sendsTotal[q] += list;
                }
            }
            if (done) {
                break;
            }
            List<WorkCompletion> wcs = c.cq.poll(64);
            long seen = peakOn && !wcs.isEmpty() ? System.nanoTime() : 0;
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
                if (peakOn) {
                    totCompleted += (int) (at + 1 - completed[q]);
                    tcompleted[totCompleted - 1] = seen;
                }
                completed[q] = at + 1;
            }
            if (receives) { // every receive that completed is posted again
                List<WorkCompletion> rw;
                while (!(rw = receiver.rcq.poll(64)).isEmpty()) {
                    idleSince = System.nanoTime();
                    for (WorkCompletion wc : rw) {
                        check(wc);
                        int q = (int) (wc.wrId() >>> 40);
                        received[q]++;
                        receiver.recvsWaiting[q]--;
                        postRecvs(receiver, q, 1);
                        recvPosted[q]++;
                    }
                }
            }
            now = System.nanoTime();
            if (timed && fromTime < 0 && now - sampleFrom >= 0) {
                fromTime = now;
                fromDone = sum(completed);
            }
            if (timed && fromTime >= 0 && toTime < 0 && now - sampleTo >= 0) {
                toTime = now;
                toDone = sum(completed);
            }
            if (!wcs.isEmpty()) {
                lastProgress = now;
                idleSince = now;
            } else if (now - lastProgress > STALL_NS) {
                throw new ErrnoException(Errno.ETIMEDOUT, "perftest: " + cfg.test().tool + " stalled at "
                        + Arrays.toString(completed) + " of " + Arrays.toString(target) + " completions");
            } else if (c.channel != null && pendingSignaled > 0) {
                awaitEvent(c, cfg, null); // -e: sleep until the CQ reports (a signaled request is on its way)
            } else {
                idleInWindow(now - idleSince);
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
        if (receives) {
            drainReceives(receiver, received, sum(posted), end);
        }
        if (c.iwarp && cfg.test() == PerfConfig.Test.WRITE_BW) {
            placementFence(c, s, nq);
        }
        double secs = (toTime - fromTime) / 1e9;
        double peak = peakOn ? size / peakNanosPerMessage(tposted, tcompleted, cfg.postList(), mod) * 1e9 : 0;
        return new Flow(iters, secs, peak, pattern, completed);
    }

    /**
     * iWARP: a WRITE completes once TCP took its bytes (RFC 5040 has no acknowledgement), so before the target is
     * checked each QP reads one byte back from its target: the responder serves a READ only after it placed the
     * WRITEs before it on the stream (RFC 5040 section 5.5, ordering), so the READ's completion fences them. The byte
     * lands in the source it was written from, which holds the same byte.
     */
    static void placementFence(Side c, Far s, int nq) {
        for (int q = 0; q < nq; q++) {
            c.qps[q].postSend(List.of(new SendWr.RdmaRead(FENCE, List.of(c.sge(c.src(q), 1)), SendFlags.SIGNALED,
                    s.dst(q), s.rkey())));
        }
        long deadline = System.nanoTime() + Perftest.STALL_NS;
        for (int done = 0; done < nq; ) {
            for (WorkCompletion wc : c.cq.poll(nq)) {
                check(wc);
                if (wc.wrId() != FENCE) {
                    throw new ErrnoException(Errno.EIO, "perftest: work request " + wc.wrId() + " completed after"
                            + " the run, where only the placement fence was outstanding");
                }
                done++;
            }
            if (System.nanoTime() - deadline > 0) {
                throw new ErrnoException(Errno.ETIMEDOUT, "perftest: the placement fence READs of " + c.name
                        + " did not complete within " + Perftest.STALL_NS / 1_000_000_000L + " s");
            }
        }
    }

    /** The work request id of a placement fence READ. */
    private static final long FENCE = -1L;

    /**
     * Polls {@code s}'s receive CQ until {@code want} receives completed in all (counted per QP in {@code received}),
     * at most {@link Perftest#STALL_NS} after {@code since}.
     */
    static void drainReceives(Side s, long[] received, long want, long since) {
        while (sum(received) < want) {
            for (WorkCompletion wc : s.rcq.poll(64)) {
                check(wc);
                int q = (int) (wc.wrId() >>> 40);
                received[q]++;
                s.recvsWaiting[q]--;
            }
            if (System.nanoTime() - since > STALL_NS) {
                throw new ErrnoException(Errno.ETIMEDOUT, "perftest: send_bw received " + sum(received) + " of " + want);
            }
        }
    }

    /**
     * perftest's peak ({@code print_report_bw}): the shortest time per message over any stretch from a posted work
     * request {@code i} (the first of a post list) to a completion {@code j} at or after it (the ones a signaled
     * completion covers, every {@code cqMod}-th, and the last), {@code (tcompleted[j] - tposted[i]) / (j - i + 1)}.
     * Quadratic, hence perftest's limit of 20000 iterations for it.
     */
    static double peakNanosPerMessage(long[] tposted, long[] tcompleted, int postList, int cqMod) {
        int n = tposted.length;
        double best = Double.MAX_VALUE;
        for (int i = 0; i < n; i += postList) {
            for (int j = (int) roundUp(i + 1, cqMod) - 1; j < n; j += cqMod) {
                best = Math.min(best, (double) (tcompleted[j] - tposted[i]) / (j - i + 1));
            }
            if (n % cqMod != 0) { // the last work request was signaled out of turn
                best = Math.min(best, (double) (tcompleted[n - 1] - tposted[i]) / (n - i));
            }
        }
        return Math.max(best, 1e-3); // two stamps of one nanosecond clock tick: no faster than that
    }

    /**
     * perftest's duration mode measures the middle of the run only: a margin of a quarter of the duration, in
     * whole seconds, is left out at either end (its START, SAMPLE and STOP_SAMPLE states); none without one.
     */
    static long marginNanos(int durationSecs) {
        return durationSecs / 4 * 1_000_000_000L;
    }

    /** The one scatter/gather list every work request of QP {@code q} uses, built once as perftest builds its SGE. */
    static List<Sge> sgl(PerfConfig cfg, Side c, int q) {
        return switch (cfg.test()) {
            case WRITE_BW, SEND_BW -> List.of(c.sge(c.src(q), cfg.size()));
            case READ_BW -> List.of(c.sge(c.dst(q), cfg.size()));
            case ATOMIC_BW -> List.of(c.sge(c.src(q), 8)); // the fetched values; dst(q) is this end's counter
            default -> throw new IllegalStateException();
        };
    }

    static SendWr wr(PerfConfig cfg, List<Sge> sgl, Side c, Far s, int q, long i, int flags) {
        long id = ((long) q << 40) | i;
        int rkey = s.rkey();
        return switch (cfg.test()) {
            case WRITE_BW -> new SendWr.RdmaWrite(id, sgl, flags, s.dst(q), rkey);
            case READ_BW -> new SendWr.RdmaRead(id, sgl, flags, s.src(q), rkey);
            case SEND_BW -> new SendWr.Send(id, sgl, flags, ud(cfg, c, s, q));
            case ATOMIC_BW -> new SendWr.AtomicFetchAndAdd(id, sgl, flags, s.dst(q), rkey, 1);
            default -> throw new IllegalStateException();
        };
    }

    /** The byte check of the flow {@code c} posted to {@code s}. */
    static void verify(PerfConfig cfg, Side c, Side s, Flow f) {
        verifyTarget(cfg, s, f.pattern(), f.completed());
        verifyInitiator(cfg, c, f.pattern());
    }

    /** The byte check on the end a flow wrote, sent or added to: its buffers against the pattern, its counters. */
    static void verifyTarget(PerfConfig cfg, Side s, byte[][] pattern, long[] completed) {
        for (int q = 0; q < cfg.qps(); q++) {
            switch (cfg.test()) {
                case WRITE_BW -> same(cfg, q, pattern[q], s.read(s.dst(q), cfg.size()), "target buffer on " + s.name);
                case SEND_BW -> same(cfg, q, pattern[q], s.read(s.dst(rq(s, q)) + grh(cfg), cfg.size()), "target buffer on " + s.name);
                case ATOMIC_BW -> {
                    long v = MemorySegment.ofArray(s.read(s.dst(q), 8)).get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
                    if (v != completed[q]) {
                        throw new ErrnoException(Errno.EIO, "perftest: atomic_bw QP " + q + ": counter on " + s.name
                                + " is " + v + " after " + completed[q] + " fetch-and-adds of 1");
                    }
                }
                default -> {
                }
            }
        }
    }

    /** The byte check on the end that posted the flow: what its READs brought. */
    static void verifyInitiator(PerfConfig cfg, Side c, byte[][] pattern) {
        if (cfg.test() == PerfConfig.Test.READ_BW) {
            for (int q = 0; q < cfg.qps(); q++) {
                same(cfg, q, pattern[q], c.read(c.dst(q), cfg.size()), "read buffer on " + c.name);
            }
        }
    }
}
