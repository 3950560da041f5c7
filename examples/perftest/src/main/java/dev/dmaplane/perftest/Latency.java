package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WorkCompletion;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.perftest.Perftest.*;

/**
 * The latency tools ({@code ib_write_lat}, {@code ib_read_lat}, {@code ib_send_lat}, {@code ib_atomic_lat}): one
 * message at a time, ping-pong or round trip, each sample timed, byte-checked at the end.
 */
final class Latency {
    private Latency() {
    }

    static byte tag(long i) {
        return (byte) (i % 255 + 1);
    }

    static PerfResult.Lat writeLat(PerfConfig cfg, Side c, Side s, BeforeCheck beforeCheck) {
        int size = cfg.size();
        byte[] pc = random(size, 7L * size), ps = random(size, 11L * size);
        c.write(c.src(0), pc);
        s.write(s.src(0), ps);
        c.write(c.dst(0), new byte[size]);
        s.write(s.dst(0), new byte[size]);
        QueuePair qc = c.qps[0], qs = s.qps[0];
        int rkeyC = c.mr.rkey(), rkeyS = s.mr.rkey();
        Ping ping = new Ping(cfg);
        OtherEnd<Void> server = OtherEnd.start("perftest-server", () -> {
            for (long i = 0; ; i++) {
                byte t = tag(i);
                if (!waitByte(s, s.dst(0), size, t, ping)) {
                    return null;
                }
                s.write(s.src(0) + size - 1, new byte[]{t});
                qs.postSend(List.of(new SendWr.RdmaWrite(i, List.of(s.sge(s.src(0), size)), SendFlags.SIGNALED | inline(cfg),
                        c.dst(0), rkeyC)));
                waitCq(s, 1, ping);
            }
        }, () -> ping.stop = true);
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
            server.join();
        }
        server.result();
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
    static PerfResult.Lat atomicLat(PerfConfig cfg, Side c, Side s, BeforeCheck beforeCheck) {
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

    static PerfResult.Lat readLat(PerfConfig cfg, Side c, Side s, BeforeCheck beforeCheck) {
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

    static PerfResult.Lat sendLat(PerfConfig cfg, Side c, Side s, BeforeCheck beforeCheck) {
        int size = cfg.size();
        byte[] pc = random(size, 17L * size), ps = random(size, 19L * size);
        c.write(c.src(0), pc);
        s.write(s.src(0), ps);
        QueuePair qc = c.qps[0], qs = s.qps[0];
        postRecvs(c, 0, 4 - c.recvsWaiting[0]); // what an earlier size left is still there
        postRecvs(s, 0, 4 - s.recvsWaiting[0]);
        Ping ping = new Ping(cfg);
        OtherEnd<Void> server = OtherEnd.start("perftest-server", () -> {
            for (long i = 0; ; i++) {
                if (!waitRecv(s, ping)) {
                    return null;
                }
                s.recvsWaiting[0]--;
                postRecvs(s, 0, 1);
                qs.postSend(List.of(new SendWr.Send(i, List.of(s.sge(s.src(0), size)), SendFlags.SIGNALED | inline(cfg),
                        ud(cfg, s, c, 0))));
            }
        }, () -> ping.stop = true);
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
            server.join();
        }
        server.result();
        beforeCheck.run(cfg, c, s);
        same(cfg, 0, pc, s.read(s.dst(0) + grh(cfg), size), "receive buffer on " + SERVER);
        same(cfg, 0, ps, c.read(c.dst(0) + grh(cfg), size), "receive buffer on " + CLIENT);
        return ping.stats(size);
    }

    /** Latency samples and when to stop (iterations or duration; either side failing). */
    static final class Ping {
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
            List<Double> samples = new ArrayList<>(cfg.histogram() || cfg.unsorted() ? n : 0);
            if (cfg.histogram() || cfg.unsorted()) {
                for (int i = 0; i < n; i++) {
                    samples.add(ns[i] / 1e3);
                }
            }
            return new PerfResult.Lat(size, n, v[0] / 1e3, v[n - 1] / 1e3, v[n / 2] / 1e3, avg / 1e3,
                    Math.sqrt(var / n) / 1e3, pct(v, 0.99) / 1e3, pct(v, 0.999) / 1e3, samples);
        }

        private static long pct(long[] sorted, double p) {
            int i = (int) Math.ceil(p * sorted.length) - 1;
            return sorted[Math.max(0, Math.min(sorted.length - 1, i))];
        }
    }

    static boolean waitByte(Side side, long addr, int size, byte t, Ping ping) {
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
    static void waitCq(Side side, int n, Ping ping) {
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

    /** Polls until one receive completes; send completions on the way are checked and dropped. */
    static boolean waitRecv(Side side, Ping ping) {
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
}
