package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.perftest.Wire.Peer;
import dev.dmaplane.rdma.verbs.WorkCompletion;

import java.util.Arrays;
import java.util.List;

import static dev.dmaplane.perftest.Perftest.*;

/**
 * The server's half of one size: its buffers prepared, and for send_bw, write_lat and send_lat its active part
 * started in a thread (reposting receives, answering pings) until {@link #stop}; {@link #finish} checks the bytes.
 */
final class ServerSize {
    private final PerfConfig one;
    private final Side s;
    private final byte[][] pattern;
    private final Peer c;
    private final Latency.Ping ping;
    private final OtherEnd<Void> active;
    private final long[] received;
    private volatile long want = -1;

    ServerSize(PerfConfig one, Side s, Peer c) {
        this.one = one;
        this.s = s;
        this.c = c;
        int size = one.size();
        ping = new Latency.Ping(one);
        received = new long[one.qps()];
        switch (one.test()) {
            case WRITE_BW, READ_BW, SEND_BW, ATOMIC_BW -> {
                pattern = Bandwidth.patterns(one, s.sharedRq());
                Bandwidth.prepareTarget(one, s, pattern);
                if (one.test() == PerfConfig.Test.SEND_BW) {
                    // every receive is posted before the client is told GO, as perftest's ctx_set_recv_wqes runs
                    // before its sync: a SEND finding none is an RNR NAK on RoCE, but a TERMINATE on iWARP
                    for (int q = 0; q < one.qps(); q++) {
                        postRecvs(s, q, s.recvTarget - s.recvsWaiting[rq(s, q)]);
                    }
                    active = OtherEnd.start("perftest-receiver", this::receive, () -> ping.stop = true);
                } else {
                    active = null;
                }
            }
            case WRITE_LAT -> {
                pattern = null;
                Latency.prepare(s, Latency.serverPattern(one), size);
                active = OtherEnd.start("perftest-server", () -> {
                    Latency.writePong(one, s, c, ping);
                    return null;
                }, () -> ping.stop = true);
            }
            case SEND_LAT -> {
                pattern = null;
                Latency.prepareSend(s, Latency.serverPattern(one));
                active = OtherEnd.start("perftest-server", () -> {
                    Latency.sendPong(one, s, c, ping);
                    return null;
                }, () -> ping.stop = true);
            }
            case READ_LAT -> {
                pattern = null;
                s.write(s.src(0), Latency.serverPattern(one));
                active = null;
            }
            case ATOMIC_LAT -> {
                pattern = null;
                s.write(s.dst(0), new byte[8]);
                active = null;
            }
            default -> throw new IllegalStateException("no server for " + one.test());
        }
    }

    /**
     * send_bw's receiver: keeps every receive queue full (filled before GO) until all {@link #want} messages
     * arrived or told to stop; on iWARP it gives the sender credits ({@link Credits}) and waits for their WRITEs
     * before it returns.
     */
    private Void receive() {
        boolean credits = Credits.apply(one, s);
        int creditsOut = 0;
        long last = System.nanoTime();
        while (true) {
            long w = want;
            if (ping.stop || w >= 0 && sum(received) >= w) {
                awaitCredits(creditsOut);
                return null;
            }
            var wcs = s.rcq.poll(64);
            for (var wc : wcs) {
                check(wc);
                int q = (int) (wc.wrId() >>> 40);
                received[q]++;
                s.recvsWaiting[rq(s, q)]--;
                postRecvs(s, q, 1);
                if (credits && Credits.received(s, c, q)) {
                    creditsOut++;
                }
            }
            if (creditsOut > 0) {
                creditsOut -= creditsDone(s.cq.poll(16));
            }
            if (!wcs.isEmpty()) {
                last = System.nanoTime();
            } else if (w >= 0 && System.nanoTime() - last > STALL_NS) {
                throw new ErrnoException(Errno.ETIMEDOUT, "perftest: send_bw received " + sum(received) + " of "
                        + w);
            } else {
                idle(System.nanoTime() - last);
            }
        }
    }

    /** The credit WRITEs among {@code wcs}, each checked. */
    private static int creditsDone(List<WorkCompletion> wcs) {
        for (WorkCompletion wc : wcs) {
            check(wc);
            if (wc.wrId() != Credits.WR_ID) {
                throw new ErrnoException(Errno.EIO, "perftest: send_bw's receiver completed work request "
                        + wc.wrId() + ", where only credits were sent");
            }
        }
        return wcs.size();
    }

    /** Waits for the {@code n} credit WRITEs still outstanding, at most {@link Perftest#STALL_NS}. */
    private void awaitCredits(int n) {
        long since = System.nanoTime();
        long deadline = since + STALL_NS;
        while (n > 0) {
            if (System.nanoTime() - deadline > 0) {
                throw new ErrnoException(Errno.ETIMEDOUT, "perftest: " + n + " receive credits of " + s.name
                        + " did not complete");
            }
            List<WorkCompletion> wcs = s.cq.poll(16);
            n -= creditsDone(wcs);
            if (wcs.isEmpty()) {
                idle(System.nanoTime() - since);
            }
        }
    }

    /** The client is gone: the active part stops where it is. */
    void abort() {
        ping.stop = true;
        if (active != null) {
            active.join();
        }
    }

    /**
     * The client ended its part, saying what it did: the pong ends, the receiver waits for every message sent;
     * then the byte check here.
     */
    void finish(String what) {
        if (one.test() == PerfConfig.Test.SEND_BW) {
            want = Arrays.stream(what.split(",")).mapToLong(Long::parseLong).sum();
        } else {
            ping.stop = true;
        }
        if (active != null) {
            active.join();
            active.result();
        }
        switch (one.test()) {
            case WRITE_BW, SEND_BW, ATOMIC_BW -> Bandwidth.verifyTarget(one, s, pattern,
                    Arrays.stream(what.split(",")).mapToLong(Long::parseLong).toArray());
            case WRITE_LAT -> Latency.checkLast(one, s, Latency.clientPattern(one), Long.parseLong(what),
                    "target buffer on " + s.name);
            case SEND_LAT -> same(one, 0, Latency.clientPattern(one), s.read(s.dst(0), one.size()),
                    "receive buffer on " + s.name);
            case ATOMIC_LAT -> Latency.checkCounter(one, s, Long.parseLong(what));
            default -> {
            }
        }
    }
}
