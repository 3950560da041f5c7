package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.QpType;

import java.util.ArrayList;
import java.util.List;

/**
 * What to run, as perftest's command line says it ({@code ib_write_bw -s 65536 -n 1000 -q 2 -t 128 ...}).
 *
 * @param test        which tool
 * @param size        message size in bytes ({@code -s}); atomics always 8
 * @param iterations  iterations per size ({@code -n}); with a duration, ignored
 * @param all         every size 2 .. 8 MiB, powers of two ({@code -a})
 * @param qps         queue pairs ({@code -q}, bandwidth tests)
 * @param duration    seconds to run per size instead of a count ({@code -D}), 0 = use iterations
 * @param reportGbits bandwidth in Gb/sec instead of MB/sec ({@code --report_gbits})
 * @param txDepth     work requests outstanding per QP ({@code -t})
 * @param cqMod       signal one work request of every {@code cqMod} ({@code -Q}, bandwidth tests)
 * @param inlineSize  messages up to this size are posted with inline data ({@code -I}, SEND and RDMA WRITE; 0: none)
 * @param postList    work requests per {@code postSend}, one doorbell each ({@code -l}, bandwidth tests; perftest's
 *                    default 1); a multiple of {@code cqMod}, which it sets when {@code -Q} is not given
 * @param bidirectional both ends send at once and the row sums both directions ({@code -b}, bandwidth tests)
 * @param connection  the QPs' transport ({@code -c RC|UC|UD}): UC takes SEND and RDMA WRITE, UD only SEND
 * @param events      sleep on completion events instead of busy polling ({@code -e}; not with {@code -D}, nor for
 *                    write_lat, which polls its buffer)
 * @param srq         the receiving end's QPs take their receives from one shared receive queue ({@code --use_srq},
 *                    SEND tests)
 * @param histogram   latency tools print every sample, sorted, before their row ({@code -H}, perftest's
 *                    {@code --report-histogram})
 * @param unsorted    latency tools print every sample in the order measured ({@code -U}, {@code --report-unsorted})
 * @param noPeak      no peak bandwidth is measured and the peak column shows 0 ({@code -N}, bandwidth tests);
 *                    perftest's duration mode and runs of more than 20000 iterations never measure it either
 *                    ({@link #measuresPeak})
 * @param rdmaCm      the QPs connect through the rdma_cm ({@code -R}, perftest's {@code --rdma_cm}; RC only), as they
 *                    always do on iWARP
 */
public record PerfConfig(Test test, int size, int iterations, boolean all, int qps, int duration, boolean reportGbits,
                         int txDepth, int cqMod, int inlineSize, int postList, boolean bidirectional,
                         QpType connection, boolean events, boolean srq, boolean noPeak, boolean histogram,
                         boolean unsorted, boolean rdmaCm) {
    /** Largest message ({@code -a} goes up to it, as perftest's 2^23). */
    public static final int MAX_SIZE = 8 << 20;
    /** Largest {@code -t}/{@code -q}: the soft HCA's queues are sized for it. */
    public static final int MAX_TX_DEPTH = 4096;
    public static final int MAX_QPS = 64;
    /** The fewest iterations of a latency test: perftest's {@code MIN_ITER}. */
    public static final int MIN_LAT_ITERATIONS = 5;

    /** The tools. */
    public enum Test {
        WRITE_BW("write_bw", "RDMA_Write BW Test", false), READ_BW("read_bw", "RDMA_Read BW Test", false),
        SEND_BW("send_bw", "Send BW Test", false), ATOMIC_BW("atomic_bw", "Atomic FETCH_AND_ADD BW Test", false),
        WRITE_LAT("write_lat", "RDMA_Write Latency Test", true), READ_LAT("read_lat", "RDMA_Read Latency Test", true),
        SEND_LAT("send_lat", "Send Latency Test", true),
        ATOMIC_LAT("atomic_lat", "Atomic FETCH_AND_ADD Latency Test", true);

        /** Whether its messages are 8-byte atomics. */
        public boolean atomic() {
            return this == ATOMIC_BW || this == ATOMIC_LAT;
        }

        public final String tool;
        public final String title;
        public final boolean latency;

        Test(String tool, String title, boolean latency) {
            this.tool = tool;
            this.title = title;
            this.latency = latency;
        }

        public static Test of(String name) {
            String n = name.startsWith("ib_") ? name.substring(3) : name;
            for (Test t : values()) {
                if (t.tool.equals(n)) {
                    return t;
                }
            }
            throw new ErrnoException(Errno.EINVAL, "perftest: unknown test '" + name + "' (one of write_bw, read_bw,"
                    + " send_bw, atomic_bw, write_lat, read_lat, send_lat, atomic_lat)");
        }
    }

    public PerfConfig {
        if (test == null) {
            throw bad("no test given");
        }
        if (size < 1 || size > MAX_SIZE) {
            throw bad("invalid size -s " + size + ": must be 1.." + MAX_SIZE);
        }
        if (test.atomic() && size != 8) {
            throw bad("invalid size -s " + size + " for " + test.tool + ": atomics are 8 bytes");
        }
        if (iterations < 1) {
            throw bad("invalid iterations -n " + iterations + ": must be >= 1");
        }
        if (test.latency && duration == 0 && iterations < MIN_LAT_ITERATIONS) {
            // n posts give n - 1 samples, of which the 2 largest are left out (Latency.Ping)
            throw bad("invalid iterations -n " + iterations + " for " + test.tool + ": latency tests need at least "
                    + MIN_LAT_ITERATIONS);
        }
        if (qps < 1 || qps > MAX_QPS) {
            throw bad("invalid number of QPs -q " + qps + ": must be 1.." + MAX_QPS);
        }
        if (test.latency && qps != 1) {
            throw bad("invalid number of QPs -q " + qps + ": latency tests use one QP");
        }
        if (duration < 0) {
            throw bad("invalid duration -D " + duration + ": must be >= 0 seconds");
        }
        if (txDepth < 1 || txDepth > MAX_TX_DEPTH) {
            throw bad("invalid tx depth -t " + txDepth + ": must be 1.." + MAX_TX_DEPTH);
        }
        if (postList < 1 || postList > txDepth) {
            throw bad("invalid post list -l " + postList + ": must be 1..tx depth (" + txDepth + ")");
        }
        if (cqMod < 1 || cqMod > txDepth) {
            throw bad("invalid CQ moderation -Q " + cqMod + ": must be 1..tx depth (" + txDepth + ")");
        }
        if (postList > 1 && postList % cqMod != 0) {
            throw bad("invalid post list -l " + postList + ": must be a multiple of CQ moderation -Q " + cqMod);
        }
        if (connection == null || (connection != QpType.RC && connection != QpType.UC && connection != QpType.UD)) {
            throw bad("invalid connection type -c " + connection + ": RC, UC or UD");
        }
        if (connection == QpType.UC && !(test == Test.WRITE_BW || test == Test.SEND_BW || test == Test.WRITE_LAT
                || test == Test.SEND_LAT)) {
            throw bad("invalid connection type -c UC for " + test.tool + ": UC carries SEND and RDMA WRITE only");
        }
        if (connection == QpType.UD && !(test == Test.SEND_BW || test == Test.SEND_LAT)) {
            throw bad("invalid connection type -c UD for " + test.tool + ": UD carries SEND only");
        }
        if (srq && test != Test.SEND_BW && test != Test.SEND_LAT) {
            throw bad("invalid option --use_srq for " + test.tool + ": a shared receive queue is for SEND tests");
        }
        if (all && duration > 0) {
            throw bad("invalid option -a with -D " + duration + ": duration mode doesn't run all sizes");
        }
        if ((histogram || unsorted) && !test.latency) {
            throw bad("invalid option " + (histogram ? "-H" : "-U") + " for " + test.tool + ": sample reports are for"
                    + " latency tests");
        }
        if (noPeak && test.latency) {
            throw bad("invalid option -N for " + test.tool + ": no peak is only valid for bandwidth tests");
        }
        if (rdmaCm && connection != QpType.RC) {
            throw bad("invalid option -R with -c " + connection + ": the rdma_cm connects RC QPs here");
        }
        if (events && duration > 0) {
            throw bad("invalid option -e with -D " + duration + ": duration mode doesn't work with events");
        }
        if (events && test == Test.WRITE_LAT) {
            throw bad("invalid option -e for write_lat: it polls its buffer, not a CQ");
        }
        if (bidirectional && test.latency) {
            throw bad("invalid option -b for " + test.tool + ": bidirectional runs are for bandwidth tests");
        }
        if (inlineSize < 0) {
            throw bad("invalid inline size -I " + inlineSize + ": must be >= 0");
        }
        if (inlineSize > 0 && (test == Test.READ_BW || test == Test.READ_LAT || test.atomic())) {
            throw bad("invalid inline size -I " + inlineSize + " for " + test.tool + ": inline data is for SEND and"
                    + " RDMA WRITE");
        }
    }

    /** A configuration whose QPs connect without the rdma_cm (on RoCE; iWARP always uses it). */
    public PerfConfig(Test test, int size, int iterations, boolean all, int qps, int duration, boolean reportGbits,
                      int txDepth, int cqMod, int inlineSize, int postList, boolean bidirectional, QpType connection,
                      boolean events, boolean srq, boolean noPeak, boolean histogram, boolean unsorted) {
        this(test, size, iterations, all, qps, duration, reportGbits, txDepth, cqMod, inlineSize, postList,
                bidirectional, connection, events, srq, noPeak, histogram, unsorted, false);
    }

    /** perftest's defaults for a tool: 65536 bytes for bandwidth, 2 for latency, 5000 / 1000 iterations. */
    public static PerfConfig defaults(Test test) {
        return new PerfConfig(test, test.atomic() ? 8 : test.latency ? 2 : 65536, test.latency ? 1000 : 5000,
                false, 1, 0, false, test.latency ? 1 : 128, test.latency ? 1 : 100, 0, 1, false, QpType.RC, false, false,
                false, false, false);
    }

    /**
     * Parses {@code write_bw -s 65536 -n 1000 ...} with perftest's option names (picocli: {@code --size=65536},
     * bundled {@code -ab}); bad options are {@code EINVAL} naming the value.
     */
    public static PerfConfig parse(String... args) {
        return PerfCli.parse(args);
    }

    private static ErrnoException bad(String msg) {
        return new ErrnoException(Errno.EINVAL, "perftest: " + msg);
    }

    /** The sizes to run: {@code size}, or every power of two 2 .. 8 MiB with {@code -a} (atomics: 8). */
    public List<Integer> sizes() {
        List<Integer> out = new ArrayList<>();
        if (!all || test.atomic()) {
            out.add(size);
        } else {
            for (int s = 2; s <= MAX_SIZE; s <<= 1) {
                out.add(s);
            }
        }
        return out;
    }

    public PerfConfig withSize(int s) {
        return new PerfConfig(test, s, iterations, all, qps, duration, reportGbits, txDepth, cqMod, inlineSize, postList,
                bidirectional, connection, events, srq, noPeak, histogram, unsorted, rdmaCm);
    }

    /** perftest measures no peak over more iterations than this (its peak search is quadratic). */
    public static final int MAX_PEAK_ITERATIONS = 20000;

    /**
     * Whether the peak bandwidth is measured: a bandwidth test without {@code -N}, not in duration mode, of at most
     * {@link #MAX_PEAK_ITERATIONS} iterations (perftest_parameters.c).
     */
    public boolean measuresPeak() {
        return !test.latency && !noPeak && duration == 0 && iterations <= MAX_PEAK_ITERATIONS;
    }
}
