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
        byte[] pc = clientPattern(cfg), ps = serverPattern(cfg);
        prepare(c, pc, size);
        prepare(s, ps, size);
        Ping ping = new Ping(cfg);
        OtherEnd<Void> server = OtherEnd.start("perftest-server", () -> {
            writePong(cfg, s, c, ping);
            return null;
        }, () -> ping.stop = true);
        long i;
        try {
            i = writePing(cfg, c, s, ping);
        } finally {
            ping.stop = true;
            server.join();
        }
        server.result();
        beforeCheck.run(cfg, c, s);
        checkLast(cfg, s, pc, i, "target buffer on " + SERVER);
        checkLast(cfg, c, ps, i, "target buffer on " + CLIENT);
        return ping.stats(size);
    }

    /** What the client of write_lat and send_lat sends. */
    static byte[] clientPattern(PerfConfig cfg) {
        int size = cfg.size();
        return random(size, (cfg.test() == PerfConfig.Test.SEND_LAT ? 17L : 7L) * size);
    }

    /** What the server of write_lat and send_lat sends back, and what read_lat reads. */
    static byte[] serverPattern(PerfConfig cfg) {
        int size = cfg.size();
        long seed = switch (cfg.test()) {
            case SEND_LAT -> 19L;
            case READ_LAT -> 13L;
            default -> 11L;
        };
        return random(size, seed * size);
    }

    /** A ping-pong end's buffers before a size: its message in its send region, its receive region cleared. */
    static void prepare(Side e, byte[] pattern, int size) {
        e.write(e.src(0), pattern);
        e.write(e.dst(0), new byte[size]);
    }

    /**
     * write_lat's client: WRITEs its message tagged with the iteration to {@code s}, polls its own buffer for the
     * answer with the same tag, and times half the round trip; returns the iterations it started.
     */
    static long writePing(PerfConfig cfg, Side c, Far s, Ping ping) {
        int size = cfg.size();
        QueuePair qc = c.qps[0];
        long i = 0;
        for (; ping.more(i); i++) {
            byte t = tag(i);
            c.write(c.src(0) + size - 1, new byte[]{t});
            ping.posted(System.nanoTime());
            qc.postSend(List.of(new SendWr.RdmaWrite(i, List.of(c.sge(c.src(0), size)), SendFlags.SIGNALED | inline(cfg),
                    s.dst(0), s.rkey())));
            if (!waitByte(c, c.dst(0), size, t, ping)) {
                break;
            }
            waitCq(c, 1, ping);
        }
        return i;
    }

    /** write_lat's server: answers each tagged message from {@code c} with its own, until told to stop. */
    static void writePong(PerfConfig cfg, Side s, Far c, Ping ping) {
        int size = cfg.size();
        QueuePair qs = s.qps[0];
        for (long i = 0; ; i++) {
            byte t = tag(i);
            if (!waitByte(s, s.dst(0), size, t, ping)) {
                return;
            }
            s.write(s.src(0) + size - 1, new byte[]{t});
            qs.postSend(List.of(new SendWr.RdmaWrite(i, List.of(s.sge(s.src(0), size)), SendFlags.SIGNALED | inline(cfg),
                    c.dst(0), c.rkey())));
            waitCq(s, 1, ping);
        }
    }

    /** write_lat's byte check on {@code e}: the other end's message, with the tag of the last of {@code iters}. */
    static void checkLast(PerfConfig cfg, Side e, byte[] pattern, long iters, String what) {
        byte[] want = pattern.clone();
        want[want.length - 1] = tag(iters - 1);
        same(cfg, 0, want, e.read(e.dst(0), cfg.size()), what);
    }

    /** atomic_lat's byte check on the server: the counter equals the fetch-and-adds of 1 done. */
    static void checkCounter(PerfConfig cfg, Side s, long done) {
        long v = MemorySegment.ofArray(s.read(s.dst(0), 8)).get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
        if (v != done) {
            throw new ErrnoException(Errno.EIO, "perftest: atomic_lat: counter on " + s.name + " is " + v + " after "
                    + done + " fetch-and-adds of 1");
        }
    }

    /**
     * ib_atomic_lat: one FETCH_AND_ADD of 1 at a time on the server's counter, the whole round trip timed. Each
     * returns the counter before its add, checked once the sample is taken; the counter ends at the number done.
     */
    static PerfResult.Lat atomicLat(PerfConfig cfg, Side c, Side s, BeforeCheck beforeCheck) {
        s.write(s.dst(0), new byte[8]);
        Ping ping = new Ping(cfg);
        long done = atomics(cfg, c, s, ping);
        beforeCheck.run(cfg, c, s);
        checkCounter(cfg, s, done);
        return ping.stats(8);
    }

    /** atomic_lat's client: one fetch-and-add at a time, each timed and its result checked; returns how many. */
    static long atomics(PerfConfig cfg, Side c, Far s, Ping ping) {
        long done = 0;
        for (long i = 0; ping.more(i); i++) {
            ping.posted(System.nanoTime());
            c.qps[0].postSend(List.of(new SendWr.AtomicFetchAndAdd(i, List.of(c.sge(c.dst(0), 8)), SendFlags.SIGNALED,
                    s.dst(0), s.rkey(), 1)));
            waitCq(c, 1, ping);
            long before = MemorySegment.ofArray(c.read(c.dst(0), 8)).get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
            if (before != i) {
                throw new ErrnoException(Errno.EIO, "perftest: atomic_lat fetch-and-add " + i + " returned " + before
                        + ", not the " + i + " adds before it");
            }
            done = i + 1;
        }
        return done;
    }

    static PerfResult.Lat readLat(PerfConfig cfg, Side c, Side s, BeforeCheck beforeCheck) {
        int size = cfg.size();
        byte[] ps = serverPattern(cfg);
        s.write(s.src(0), ps);
        Ping ping = new Ping(cfg);
        reads(cfg, c, s, ping);
        beforeCheck.run(cfg, c, s);
        same(cfg, 0, ps, c.read(c.dst(0), size), "read buffer on " + CLIENT);
        return ping.stats(size);
    }

    /** read_lat's client: one RDMA READ of the server's message at a time, each timed. */
    static void reads(PerfConfig cfg, Side c, Far s, Ping ping) {
        int size = cfg.size();
        c.write(c.dst(0), new byte[size]);
        for (long i = 0; ping.more(i); i++) {
            ping.posted(System.nanoTime());
            c.qps[0].postSend(List.of(new SendWr.RdmaRead(i, List.of(c.sge(c.dst(0), size)), SendFlags.SIGNALED,
                    s.src(0), s.rkey())));
            waitCq(c, 1, ping);
        }
    }

    static PerfResult.Lat sendLat(PerfConfig cfg, Side c, Side s, BeforeCheck beforeCheck) {
        int size = cfg.size();
        byte[] pc = clientPattern(cfg), ps = serverPattern(cfg);
        prepareSend(c, pc);
        prepareSend(s, ps);
        Ping ping = new Ping(cfg);
        OtherEnd<Void> server = OtherEnd.start("perftest-server", () -> {
            sendPong(cfg, s, c, ping);
            return null;
        }, () -> ping.stop = true);
        try {
            sendPing(cfg, c, s, ping);
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

    /** A send_lat end before a size: its message in place, four receives posted (an earlier size's are still there). */
    static void prepareSend(Side e, byte[] pattern) {
        e.write(e.src(0), pattern);
        postRecvs(e, 0, 4 - e.recvsWaiting[0]);
    }

    /** send_lat's client: SENDs, waits for the answer's receive, times half the round trip. */
    static void sendPing(PerfConfig cfg, Side c, Far s, Ping ping) {
        int size = cfg.size();
        QueuePair qc = c.qps[0];
        for (long i = 0; ping.more(i); i++) {
            ping.posted(System.nanoTime());
            qc.postSend(List.of(new SendWr.Send(i, List.of(c.sge(c.src(0), size)), SendFlags.SIGNALED | inline(cfg),
                    ud(cfg, c, s, 0))));
            if (!waitRecv(c, ping)) {
                break;
            }
            c.recvsWaiting[0]--;
            postRecvs(c, 0, 1);
        }
    }

    /** send_lat's server: answers every message received with a SEND of its own, until told to stop. */
    static void sendPong(PerfConfig cfg, Side s, Far c, Ping ping) {
        int size = cfg.size();
        QueuePair qs = s.qps[0];
        for (long i = 0; ; i++) {
            if (!waitRecv(s, ping)) {
                return;
            }
            s.recvsWaiting[0]--;
            postRecvs(s, 0, 1);
            qs.postSend(List.of(new SendWr.Send(i, List.of(s.sge(s.src(0), size)), SendFlags.SIGNALED | inline(cfg),
                    ud(cfg, s, c, 0))));
        }
    }

    /**
     * Latency samples and when to stop (iterations or duration; either side failing). As perftest 6.29's latency
     * tests ({@code perftest_resources.c}: {@code run_iter_lat_write}, {@code run_iter_lat}; {@code
     * perftest_parameters.c}: {@code print_report_lat}), which run no warm-up iterations: the time of each post is
     * taken, a sample is the time between two posts (so {@code n} posts give {@code n - 1} samples and the first
     * round trip, the one that warms the path up, is in none), halved for the ping-pongs, and the
     * {@value #MEASURE_TAIL} largest samples are left out of the statistics.
     */
    static final class Ping {
        /** perftest's {@code LAT_MEASURE_TAIL}: the largest samples left out of the statistics. */
        static final int MEASURE_TAIL = 2;
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

        /** A message is posted now ({@code tposted}). */
        void posted(long now) {
            if (n == ns.length) {
                ns = Arrays.copyOf(ns, n * 2);
            }
            ns[n++] = now;
        }

        /**
         * print_report_lat's figures: over the sorted samples but the tail; t_max is its {@code delta[measure_cnt]},
         * the smaller of the two tail samples.
         */
        PerfResult.Lat stats(int size) {
            int all = n - 1;
            int m = all - MEASURE_TAIL;
            if (m < 1) {
                throw new ErrnoException(Errno.EIO, "perftest: " + cfg.test().tool + " measured " + Math.max(0, all)
                        + " samples, fewer than the " + (MEASURE_TAIL + 1) + " it needs");
            }
            // read_lat and atomic_lat time the whole round trip, the ping-pongs half of it
            double perUs = (cfg.test() == PerfConfig.Test.READ_LAT || cfg.test() == PerfConfig.Test.ATOMIC_LAT ? 1 : 2)
                    * 1e3;
            long[] v = new long[all];
            for (int i = 0; i < all; i++) {
                v[i] = ns[i + 1] - ns[i];
            }
            List<Double> samples = new ArrayList<>(cfg.histogram() || cfg.unsorted() ? all : 0);
            if (cfg.histogram() || cfg.unsorted()) {
                for (long x : v) {
                    samples.add(x / perUs);
                }
            }
            Arrays.sort(v);
            double sum = 0;
            for (int i = 0; i < m; i++) {
                sum += v[i] / perUs;
            }
            double avg = sum / m;
            double var = 0;
            for (int i = 0; i < m; i++) {
                double d = avg - v[i] / perUs;
                var += d * d;
            }
            double median = (m - 1) % 2 != 0 ? (v[m / 2] + v[m / 2 - 1]) / 2.0 : v[m / 2];
            return new PerfResult.Lat(size, n, v[0] / perUs, v[m] / perUs, median / perUs, avg,
                    Math.sqrt(var / m), v[(int) Math.ceil(m * 0.99)] / perUs, v[(int) Math.ceil(m * 0.999)] / perUs,
                    samples);
        }
    }

    static boolean waitByte(Side side, long addr, int size, byte t, Ping ping) {
        long start = System.nanoTime();
        while (side.lastByte(addr, size) != t) {
            if (ping.stop) {
                return false;
            }
            if (System.nanoTime() - start > STALL_NS) {
                throw new ErrnoException(Errno.ETIMEDOUT, "perftest: " + ping.cfg.test().tool + " no data arrived");
            }
            idle(System.nanoTime() - start);
        }
        return true;
    }

    /** Polls until {@code n} send completions came (receive completions are not expected here). */
    static void waitCq(Side side, int n, Ping ping) {
        CompletionQueue cq = side.cq;
        long start = System.nanoTime();
        int got = 0;
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
                    idle(System.nanoTime() - start);
                }
            }
        }
    }

    /** Polls until one receive completes; send completions on the way are checked and dropped. */
    static boolean waitRecv(Side side, Ping ping) {
        long start = System.nanoTime();
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
                idle(System.nanoTime() - start);
            }
        }
    }
}
