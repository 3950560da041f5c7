package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.CompletionQueue;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.NodeType;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.UdDestination;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.rdma.verbs.WorkCompletion;

import java.io.PrintStream;
import java.math.BigDecimal;
import java.math.MathContext;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * perftest's tools ({@code ib_write_bw}, {@code ib_read_bw}, {@code ib_send_bw}, {@code ib_atomic_bw},
 * {@code ib_write_lat}, {@code ib_read_lat}, {@code ib_send_lat}, {@code ib_atomic_lat}) between rxe0 (client) and
 * rxe1 (server), in one process through the public verbs: the two ends and their connection here, the runs in
 * {@link Bandwidth} and {@link Latency}. Every run checks the bytes at the end (the target's buffer against the source's,
 * the atomic counter against the number of atomics) and fails with {@code EIO} if they differ.
 */
public final class Perftest {
    static final String CLIENT = "rxe0";
    static final String SERVER = "rxe1";
    static final int ALL = Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_READ | Access.REMOTE_ATOMIC;
    static final long STALL_NS = 10_000_000_000L;
    static final double MB = 1 << 20;

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
        return run(machine, core, cfg, BeforeCheck.NONE, Header.psns(), text -> {
        });
    }

    /**
     * {@link #run(Machine, RdmaCore, PerfConfig)}, printing perftest's report on {@code out} as it is made: the header
     * once both ends are connected, each row as soon as it is measured (perftest's {@code -a}).
     */
    public static PerfResult run(Machine machine, RdmaCore core, PerfConfig cfg, PrintStream out) {
        return run(machine, core, cfg, BeforeCheck.NONE, Header.psns(), text -> {
            out.print(text);
            out.flush();
        });
    }

    /** {@link #run(PerfConfig)}, printing the report on {@code out} as it is made. */
    public static PerfResult run(PerfConfig cfg, PrintStream out) {
        return Standalone.run(cfg, out);
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
        return run(machine, core, cfg, CLIENT, SERVER, beforeCheck, Header.psns(), text -> {
        });
    }

    /** A run from device {@code client} to device {@code server} of {@code core}, nothing printed. */
    static PerfResult run(Machine machine, RdmaCore core, PerfConfig cfg, String client, String server,
                          BeforeCheck beforeCheck) {
        return run(machine, core, cfg, client, server, beforeCheck, Header.psns(), text -> {
        });
    }

    /** The run between rxe0 and rxe1 with the given PSN source and printer (the tests' entry). */
    static PerfResult run(Machine machine, RdmaCore core, PerfConfig cfg, BeforeCheck beforeCheck, Random psns,
                          Consumer<String> print) {
        return run(machine, core, cfg, CLIENT, SERVER, beforeCheck, psns, print);
    }

    /**
     * The run from device {@code client} to device {@code server} of {@code core}: the QPs' first PSNs drawn from
     * {@code psns}, {@code beforeCheck} called before every byte check, the report handed to {@code print} as it is
     * made (the header, then each row as soon as it is measured). On iWARP devices the QPs connect through the
     * rdma_cm ({@link CmConnect}), as perftest forces rdma_cm there, and the tests iWARP cannot carry are refused
     * before anything is set up.
     */
    static PerfResult run(Machine machine, RdmaCore core, PerfConfig cfg, String client, String server,
                          BeforeCheck beforeCheck, Random psns, Consumer<String> print) {
        RdmaDevice cd = core.device(client).orElseThrow(() -> new ErrnoException(Errno.ENODEV,
                "perftest: no RDMA device " + client));
        boolean iwarp = cd.nodeType().transport() == NodeType.Transport.IWARP;
        if (iwarp) {
            checkIwarp(cfg, cd);
        }
        int maxSize = cfg.sizes().stream().mapToInt(Integer::intValue).max().orElseThrow();
        long region = roundUp(Math.max(maxSize + GRH, 64), 4096);
        try (Side c = new Side(machine, core, client, cfg, region, psns);
             Side s = new Side(machine, core, server, cfg, region, psns)) {
            if (c.viaCm) {
                CmConnect.connect(core, c, s);
            }
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
            for (int q = 0; q < cfg.qps() && !c.viaCm; q++) {
                connect(c.qps[q], c.psn(q), s, q, c.ctx, cfg.connection(), TIMEOUT);
                connect(s.qps[q], s.psn(q), c, q, s.ctx, cfg.connection(), TIMEOUT);
            }
            String header = header(cfg, c, s);
            print.accept(header);
            StringBuilder out = new StringBuilder(header);
            List<PerfResult.Row> rows = new ArrayList<>();
            for (int size : sizes) {
                PerfConfig one = cfg.withSize(size);
                PerfResult.Row row = switch (cfg.test()) {
                    case WRITE_BW, READ_BW, SEND_BW, ATOMIC_BW -> cfg.bidirectional()
                            ? Bandwidth.bidirectional(one, c, s, beforeCheck) : Bandwidth.bw(one, c, s, beforeCheck);
                    case WRITE_LAT -> Latency.writeLat(one, c, s, beforeCheck);
                    case READ_LAT -> Latency.readLat(one, c, s, beforeCheck);
                    case SEND_LAT -> Latency.sendLat(one, c, s, beforeCheck);
                    case ATOMIC_LAT -> Latency.atomicLat(one, c, s, beforeCheck);
                };
                rows.add(row);
                StringBuilder lines = new StringBuilder();
                if (row instanceof PerfResult.Lat lat) {
                    samples(cfg, lat, lines);
                }
                lines.append(format(cfg, row)).append('\n');
                print.accept(lines.toString());
                out.append(lines);
            }
            print.accept(LINE + "\n");
            out.append(LINE).append('\n');
            return new PerfResult(cfg, List.copyOf(rows), out.toString());
        }
    }

    /**
     * What an iWARP device cannot run, refused in one line naming why: atomics (RFC 5040 has none; siw's
     * {@code atomic_cap} is NONE and it refuses them at post) and QPs other than RC (siw creates RC QPs only).
     */
    static void checkIwarp(PerfConfig cfg, RdmaDevice d) {
        if (cfg.test().atomic()) {
            throw new ErrnoException(Errno.EOPNOTSUPP, "perftest: " + cfg.test().tool + " needs atomics, which "
                    + d.name() + " (iWARP, atomic_cap " + d.attr().atomicCap() + ") does not have");
        }
        if (cfg.connection() != QpType.RC) {
            throw new ErrnoException(Errno.EOPNOTSUPP, "perftest: connection type " + cfg.connection() + " on "
                    + d.name() + ": iWARP carries RC only");
        }
    }

    /**
     * The other end of a run as the requester sees it (perftest's {@code pingpong_dest}: the remote address, QPNs
     * and rkey it learns out of band): where that end's buffers are and how to address them. A {@link Side} of this
     * process, or a {@link Wire.Peer} of another.
     */
    interface Far {
        /** QP {@code q}'s send region on that end (the source of what it sends, what READs read). */
        long src(int q);

        /** QP {@code q}'s receive region on that end (the target of WRITEs, atomics and receives). */
        long dst(int q);

        /** The rkey of that end's memory region. */
        int rkey();

        /** The number of that end's QP {@code q}. */
        int qpn(int q);

        /** That end's GID (port 1, index {@value #GID_INDEX}). */
        Gid gid();

        /** The first PSN of that end's QP {@code q}: what its QP sends first, what the QP facing it expects. */
        int psn(int q);

        /** Whether that end's QPs share one receive queue ({@code --use_srq}). */
        boolean sharedRq();
    }

    /** perftest's local ACK timeout ({@code -u}, default 14: 4.096 µs * 2^14, about 67 ms) within one process. */
    static final int TIMEOUT = 14;

    /** perftest's Q_Key for UD ({@code DEF_QKEY}). */
    static final int QKEY = 0x11111111;
    /** Bytes of Global Route Header a UD receive buffer starts with (IBTA 11.4.1.1: the GRH lands first). */
    static final int GRH = 40;

    /** Where a UD receive's payload starts in its buffer: after the GRH; 0 for connected QPs. */
    static int grh(PerfConfig cfg) {
        return cfg.connection() == QpType.UD ? GRH : 0;
    }

    /** The destination of a UD send from {@code from} to {@code to}'s QP {@code q}; null for connected QPs. */
    static UdDestination ud(PerfConfig cfg, Side from, Far to, int q) {
        return cfg.connection() == QpType.UD ? new UdDestination(from.ah, to.qpn(q), QKEY) : null;
    }

    /** The GID index both ends use on port 1: the RoCEv2 IPv4 entry rxe adds after the link-local one. */
    static final int GID_INDEX = 1;

    /**
     * The transitions to RTS with the attributes each transport requires (ibv_modify_qp's table): {@code qp} sends
     * from {@code psn}, and expects {@code peer}'s QP {@code q} to send from its PSN (perftest's {@code ctx_connect}).
     */
    static void connect(QueuePair qp, int psn, Far peer, int q, VerbsContext ctx, QpType type, int timeout) {
        int peerQpn = peer.qpn(q);
        Gid peerGid = peer.gid();
        if (type == QpType.UD) {
            qp.modify(QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1).qkey(QKEY).build());
            qp.modify(QpAttr.builder().state(QpState.RTR).build());
            qp.modify(QpAttr.builder().state(QpState.RTS).sqPsn(psn).build());
            return;
        }
        if (type == QpType.UC) {
            qp.modify(QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1)
                    .accessFlags(Access.LOCAL_WRITE | Access.REMOTE_WRITE).build());
            qp.modify(QpAttr.builder().state(QpState.RTR).av(AhAttr.roce(peerGid, 1, GID_INDEX))
                    .pathMtu(ctx.queryPort(1).activeMtu()).destQpn(peerQpn).rqPsn(peer.psn(q)).build());
            qp.modify(QpAttr.builder().state(QpState.RTS).sqPsn(psn).build());
            return;
        }
        int rdAtomic = outReads(ctx);
        qp.modify(QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1).accessFlags(ALL).build());
        qp.modify(QpAttr.builder().state(QpState.RTR).av(AhAttr.roce(peerGid, 1, GID_INDEX))
                .pathMtu(ctx.queryPort(1).activeMtu()).destQpn(peerQpn).rqPsn(peer.psn(q))
                .maxDestRdAtomic(rdAtomic).minRnrTimer(1).build());
        qp.modify(QpAttr.builder().state(QpState.RTS).sqPsn(psn).timeout(timeout).retryCnt(7).rnrRetry(7)
                .maxRdAtomic(rdAtomic).build());
    }

    /** RDMA READs and atomics outstanding per QP (perftest's {@code out_reads}): the device's, 1 .. 16. */
    static int outReads(VerbsContext ctx) {
        return Math.max(1, Math.min(16, ctx.queryDevice().maxQpRdAtom()));
    }

    /** {@code IBV_SEND_INLINE} when the message fits {@code -I}. */
    static int inline(PerfConfig cfg) {
        return cfg.size() <= cfg.inlineSize() ? SendFlags.INLINE : 0;
    }

    /**
     * The receive queue QP {@code q} of {@code s} takes its receives from, as an index: its own, or 0 for all with
     * an SRQ (whose receives all use QP 0's region: any QP's message may land in any of them).
     */
    static int rq(Side s, int q) {
        return s.srq != null ? 0 : q;
    }

    /** Posts {@code n} receives for {@code s}'s QP {@code q} (on its SRQ, if any), each over a whole receive region. */
    static void postRecvs(Side s, int q, int n) {
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

    static void same(PerfConfig cfg, int q, byte[] want, byte[] got, String what) {
        int i = Arrays.mismatch(want, got);
        if (i >= 0) {
            throw new ErrnoException(Errno.EIO, "perftest: " + cfg.test().tool + " size " + cfg.size() + " QP " + q
                    + ": " + what + " differs from the source at byte " + i);
        }
    }

    /**
     * {@code -e}: sleeps until {@code side}'s CQ reports a completion ({@code ibv_get_cq_event}), acknowledges the
     * event and arms the CQ again (perftest's {@code ctx_notify_events}). Call it only after a poll found the CQ
     * empty: a completion that came after the last arming raised an event, and one that came before it is found
     * by the poll that follows.
     */
    static void awaitEvent(Side side, PerfConfig cfg, Latency.Ping ping) {
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
    static final Duration EVENT_SLICE = Duration.ofMillis(5);

    /** How long a poller that finds nothing busy-polls before it starts giving its CPU away. */
    static final long SPIN_NS = TimeUnit.MICROSECONDS.toNanos(5);

    /**
     * Between two polls that found nothing, {@code idleNanos} after the poller started waiting: busy-polls as
     * perftest does (the soft HCAs run in the threads that post to them) for {@link #SPIN_NS}, then yields the CPU
     * at each poll. The other side's HCA, or this side's receive thread, may be waiting for a CPU on a machine with
     * no more cores than busy threads, and the scheduler lets a woken thread preempt one that spins only at the end
     * of its slice: a poller that spun for thousands of polls held write_lat between processes at 200-450 us typical,
     * where yielding after a few microseconds gives 13-25 us.
     */
    static void idle(long idleNanos) {
        if (idleNanos < SPIN_NS) {
            Thread.onSpinWait();
        } else {
            Thread.yield();
        }
    }

    static void check(WorkCompletion wc) {
        if (!wc.isSuccess()) {
            throw new ErrnoException(Errno.EIO, "perftest: work completion failed: " + wc);
        }
    }

    /**
     * perftest's {@code -U} and {@code -H} reports before a latency row: {@code #, usec}, then one {@code i, value}
     * line per sample, in the order measured ({@code -U}) and then sorted ({@code -H}), values as C's {@code %g}.
     */
    static void samples(PerfConfig cfg, PerfResult.Lat lat, StringBuilder out) {
        if (cfg.unsorted()) {
            sampleLines(lat.samples(), out);
        }
        if (cfg.histogram()) {
            // as print_report_lat: the sorted samples the figures are taken from, the tail left out
            List<Double> all = lat.samples();
            sampleLines(all.stream().sorted().limit(Math.max(0, all.size() - Latency.Ping.MEASURE_TAIL)).toList(), out);
        }
    }

    private static void sampleLines(List<Double> values, StringBuilder out) {
        out.append("#, usec\n");
        for (int i = 0; i < values.size(); i++) {
            out.append(i + 1).append(", ").append(cFormatG(values.get(i))).append('\n');
        }
    }

    /** C's {@code printf("%g")}: six significant digits, trailing zeros dropped, an exponent outside 1e-4 .. 1e6. */
    static String cFormatG(double v) {
        if (v == 0) {
            return "0";
        }
        BigDecimal d = new BigDecimal(v).round(new MathContext(6));
        int exp = d.precision() - d.scale() - 1;
        if (exp < -4 || exp >= 6) {
            String m = d.movePointLeft(exp).stripTrailingZeros().toPlainString();
            return m + (exp < 0 ? "e-" : "e+") + (Math.abs(exp) < 10 ? "0" : "") + Math.abs(exp);
        }
        return d.stripTrailingZeros().toPlainString();
    }

    static final String LINE = "-".repeat(87);

    static String columns(PerfConfig cfg) {
        if (cfg.test().latency) {
            return " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]"
                    + "   99% percentile[usec]   99.9% percentile[usec] ";
        }
        String u = cfg.reportGbits() ? "Gb/sec" : "MB/sec";
        return " #bytes     #iterations    BW peak[" + u + "]    BW average[" + u + "]   MsgRate[Mpps]";
    }

    /** The in-process header: the ends as {@code rxe0 -> rxe1}, rxe0's addresses as local, rxe1's as remote. */
    static String header(PerfConfig cfg, Side c, Side s) {
        return Header.info(cfg, c.name + " -> " + s.name, c, Header.Role.BOTH) + Header.addresses(cfg, c, s)
                + LINE + "\n" + columns(cfg) + "\n";
    }

    static String format(PerfConfig cfg, PerfResult.Row row) {
        return switch (row) {
            case PerfResult.Bw bw -> String.format(" %-10d %-10d     %-18.2f %-18.2f   %.6f", bw.bytes(), bw.iterations(),
                    bw.bwPeak(), bw.bwAverage(), bw.msgRateMpps());
            case PerfResult.Lat l -> String.format(" %-7d %-10d %-14.2f %-14.2f %-16.2f %-14.2f %-16.2f %-22.2f %.2f",
                    l.bytes(), l.iterations(), l.tMin(), l.tMax(), l.tTypical(), l.tAvg(), l.tStdev(), l.p99(), l.p999());
        };
    }

    static double unit(PerfConfig cfg, double bytesPerSec) {
        return cfg.reportGbits() ? bytesPerSec * 8 / 1e9 : bytesPerSec / MB;
    }

    static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    static long sum(long[] a) {
        long s = 0;
        for (long x : a) {
            s += x;
        }
        return s;
    }

    static long roundUp(long v, long m) {
        return (v + m - 1) / m * m;
    }
}
