package dev.dmaplane.perftest;

import dev.dmaplane.driver.softroce.SoftRoceDriver;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.perftest.impl.PerfCommands;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.cm.CmEvent;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.EventChannel;
import dev.dmaplane.rdma.cm.PortSpace;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Each tool between rxe0 and rxe1 with few iterations: the table, the counts, the checked bytes; bad options. */
@Timeout(120)
class PerftestTest {
    static Machine machine;
    static RdmaCore core;
    static SoftRoceDriver driver;

    @BeforeAll
    static void boot() {
        machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
        core = new RdmaCore(machine.tracer());
        driver = new SoftRoceDriver(core);
        machine.devices().registerDriver(driver);
    }

    @AfterAll
    static void shutdown() {
        machine.devices().unregisterDriver(driver);
        core.close();
        machine.close();
    }

    private static PerfResult run(String... args) {
        PerfResult r = Perftest.run(machine, core, PerfConfig.parse(args));
        System.out.print(r.report());
        return r;
    }

    private static final String BW_COLUMNS = " #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]";
    private static final String LAT_COLUMNS = " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]"
            + "    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] ";

    @ParameterizedTest
    @ValueSource(strings = {"write_bw", "read_bw", "send_bw"})
    void bandwidthToolsMoveAndCheckTheBytes(String tool) {
        PerfResult r = run(tool, "-s", "4096", "-n", "300", "-t", "32");
        assertTrue(r.report().contains(BW_COLUMNS + "\n"), r.report());
        PerfResult.Bw row = assertInstanceOf(PerfResult.Bw.class, r.rows().getFirst());
        assertEquals(4096, row.bytes());
        assertEquals(300, row.iterations());
        assertTrue(row.bwAverage() > 0 && row.bwPeak() >= row.bwAverage() && row.msgRateMpps() > 0, row.toString());
        assertTrue(r.report().matches("(?s).*\\n 4096 +300 +[0-9.]+ +[0-9.]+ +[0-9.]+\\n.*"), r.report());
    }

    /**
     * {@code -R} on RoCE: the QPs connect through the rdma_cm ({@code perftest_communication.c}'s
     * {@code rdma_cm_client_connection} / {@code rdma_cm_server_connection}; {@code cma.c}'s IB CM path: REQ, REP,
     * RTU), the header says so, the bytes are checked; with {@code -c UD} it is refused.
     */
    @ParameterizedTest
    @ValueSource(strings = {"write_bw", "read_bw", "send_lat"})
    void rdmaCmConnectsTheQpsOnRoce(String tool) {
        PerfResult r = run(tool, "-R", "-n", "100", "-s", "4096", "-q", tool.endsWith("_bw") ? "2" : "1");
        assertTrue(r.report().contains(" rdma_cm QPs\t : ON\n"), r.report());
        assertTrue(r.report().matches("(?s).*\\n 4096 +(200|100) .*"), r.report());
        ErrnoException ud = assertThrows(ErrnoException.class,
                () -> PerfConfig.parse("send_bw", "-R", "-c", "UD"));
        assertEquals(Errno.EINVAL, ud.errno());
        assertTrue(ud.getMessage().contains("-R with -c UD"), ud.getMessage());
    }

    /**
     * With {@code -R} each QP is its cm id's, as perftest's {@code create_qp_main} makes it for RDMA_CM
     * ({@code rdma_create_qp} on the id): at the byte check every id of either end holds the QP that end posted to,
     * moved to RTS by the rdma_cm; at the end of the run the QPs go with the ids ({@code rdma_destroy_qp},
     * {@code rdma_destroy_id}): destroyed, no id left.
     */
    @Test
    void rdmaCmQpsAreTheIdsAndGoWithThem() {
        List<CmId> ids = new ArrayList<>();
        List<QueuePair> qps = new ArrayList<>();
        Perftest.run(machine, core, PerfConfig.parse("write_bw", "-R", "-n", "20", "-s", "4096", "-q", "2"),
                (cfg, client, server) -> collectIdQps(client, server, 2, ids, qps));
        assertIdQpsDestroyed(core, ids, qps, 4);
    }

    /**
     * The server end of a run between processes takes its connections' events in the order they come, as perftest's
     * {@code rdma_cm_connect_events} hands each one to {@code rdma_cm_events_dispatcher} by its type: here the client
     * sends both requests before the server looks, so the second CONNECT_REQUEST waits on the server's channel before
     * the first connection's ESTABLISHED (over siw between processes this happens when the client's next request
     * overtakes its RTR message). Both connections come up, each server QP in RTS on its own id.
     */
    @Test
    void theServerEndTakesTheNextRequestBeforeTheLastEstablished() {
        PerfConfig cfg = PerfConfig.parse("write_bw", "-R", "-q", "2", "-n", "10", "-s", "4096");
        try (Side c = new Side(machine, core, Perftest.CLIENT, cfg, 8192, new Random(1));
             Side s = new Side(machine, core, Perftest.SERVER, cfg, 8192, new Random(2));
             EventChannel ch = core.cm().createEventChannel(c.mm)) {
            s.cm = CmConnect.listen(core, s);
            List<CmId> ids = new ArrayList<>();
            for (int q = 0; q < 2; q++) {
                CmId id = ch.createId(PortSpace.TCP);
                ids.add(id);
                id.resolveAddr(new InetSocketAddress(c.gid.toInetAddress(), 0), s.cm.address(), 10_000);
                assertEquals(CmEventType.ADDR_RESOLVED, take(ch).type());
                id.resolveRoute(10_000);
                assertEquals(CmEventType.ROUTE_RESOLVED, take(ch).type());
                id.createQp(c.pd, c.qpInit);
            }
            for (CmId id : ids) {
                id.connect(new ConnParam(null, 16, 16, 0, 7, 7, false, 0));
            }
            s.cm.accept();
            assertEquals(List.of(CmEventType.ESTABLISHED, CmEventType.ESTABLISHED),
                    List.of(take(ch).type(), take(ch).type()));
            List<CmId> served = s.cm.ids();
            assertEquals(2, served.size());
            for (CmId id : served) {
                assertEquals(QpState.RTS, id.qp().query().qpState());
            }
            for (CmId id : ids) {
                id.destroyQp();
            }
        }
    }

    private static CmEvent take(EventChannel ch) {
        CmEvent e = ch.getEvent(Duration.ofSeconds(10));
        e.ack();
        return e;
    }

    /** The ids and QPs of both ends, each QP checked to be its id's and in RTS. */
    static void collectIdQps(Side client, Side server, int n, List<CmId> ids,
                             List<QueuePair> qps) {
        for (Side side : List.of(client, server)) {
            List<CmId> mine = side.cm.ids();
            assertEquals(n, mine.size(), "one id per QP");
            for (int q = 0; q < n; q++) {
                assertSame(side.qps[q], mine.get(q).qp(), "QP " + q + " of " + side.name + " is its id's");
                assertEquals(QpState.RTS, side.qps[q].query().qpState(), "moved by the rdma_cm");
                ids.add(mine.get(q));
                qps.add(side.qps[q]);
            }
        }
    }

    static void assertIdQpsDestroyed(RdmaCore core, List<CmId> ids, List<QueuePair> qps, int n) {
        assertEquals(n, qps.size(), "checked once");
        assertTrue(qps.stream().allMatch(QueuePair::isDestroyed), "rdma_destroy_qp");
        ids.forEach(id -> assertNull(id.qp(), "the id holds no QP any more"));
        assertTrue(core.cm().ids().isEmpty(), "rdma_destroy_id");
    }

    @Test
    void atomicBwCountsEveryFetchAndAddOnTheServer() {
        PerfResult r = run("atomic_bw", "-n", "200", "-q", "2", "-t", "16");
        PerfResult.Bw row = (PerfResult.Bw) r.rows().getFirst();
        assertEquals(8, row.bytes());
        assertEquals(400, row.iterations(), "200 per QP on 2 QPs");
        assertTrue(r.report().contains("Atomic FETCH_AND_ADD BW Test"));
    }

    @ParameterizedTest
    @ValueSource(strings = {"write_lat", "read_lat", "send_lat"})
    void latencyToolsReportPercentiles(String tool) {
        PerfResult r = run(tool, "-s", "100", "-n", "200");
        assertTrue(r.report().contains(LAT_COLUMNS + "\n"), r.report());
        PerfResult.Lat l = assertInstanceOf(PerfResult.Lat.class, r.rows().getFirst());
        assertEquals(100, l.bytes());
        assertEquals(200, l.iterations());
        assertTrue(l.tMin() > 0 && l.tMin() <= l.tTypical() && l.tTypical() <= l.p99() && l.p99() <= l.p999()
                && l.p999() <= l.tMax() && l.tStdev() >= 0, l.toString());
    }

    @Test
    void multipleQpsGbitsAndBigMessagesWithSmallTxDepth() {
        PerfResult r = run("write_bw", "-s", "262144", "-n", "20", "-q", "3", "-t", "4", "--report_gbits");
        assertTrue(r.report().contains(" #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]"));
        assertEquals(60, r.rows().getFirst().iterations(), "20 per QP on 3 QPs");
        assertEquals(3, r.report().lines().filter(l -> l.startsWith(" local address")).count());
    }

    @Test
    void allSizesRunEveryPowerOfTwoUpToEightMebibytes() {
        PerfResult r = run("write_bw", "-a", "-n", "2", "-t", "2", "-Q", "1");
        List<Integer> sizes = r.rows().stream().map(PerfResult.Row::bytes).toList();
        assertEquals(23, sizes.size());
        assertEquals(2, sizes.getFirst());
        assertEquals(8 << 20, sizes.getLast());
        assertTrue(r.rows().stream().allMatch(x -> x.iterations() == 2));
    }

    @Test
    void durationRunsForTheGivenSecondsAndCountsWhatItDid() {
        long t0 = System.nanoTime();
        PerfResult r = run("send_bw", "-s", "64", "-D", "1", "-t", "16", "-Q", "8");
        double secs = (System.nanoTime() - t0) / 1e9;
        assertTrue(secs >= 1 && secs < 10, "took " + secs);
        long n = r.rows().getFirst().iterations();
        assertTrue(n > 0 && n % 8 == 0, "stops on a signaled completion: " + n);
        PerfResult l = run("read_lat", "-s", "8", "-D", "1");
        assertTrue(l.rows().getFirst().iterations() > 10);
    }

    /**
     * perftest_parameters.c: duration mode sets noPeak ("WARNING: BW peak won't be measured in this run.") and
     * refuses all sizes; {@code -N} asks for no peak in a counted run; print_report_bw prints a peak of 0 then.
     */
    @Test
    void durationAndMinusNMeasureNoPeakAndDurationRunsOneSize() {
        PerfResult d = run("write_bw", "-s", "64", "-D", "1", "-t", "16", "-Q", "8");
        assertTrue(d.report().startsWith(" WARNING: BW peak won't be measured in this run.\n"), d.report());
        PerfResult.Bw row = (PerfResult.Bw) d.rows().getFirst();
        assertEquals(0, row.bwPeak());
        assertTrue(row.bwAverage() > 0);
        PerfResult n = run("write_bw", "-s", "64", "-n", "200", "-t", "16", "-Q", "8", "-N");
        assertEquals(0, ((PerfResult.Bw) n.rows().getFirst()).bwPeak());
        assertFalse(n.report().contains("WARNING"), "asked for: no warning");
        PerfResult counted = run("write_bw", "-s", "64", "-n", "200", "-t", "16", "-Q", "8");
        PerfResult.Bw c = (PerfResult.Bw) counted.rows().getFirst();
        assertTrue(c.bwPeak() >= c.bwAverage() && c.bwAverage() > 0, c.toString());
        PerfResult many = run("write_bw", "-s", "64", "-n", "20001", "-t", "128", "-Q", "100");
        assertTrue(many.report().startsWith(" WARNING: BW peak won't be measured in this run.\n"),
                "perftest measures no peak over 20000 iterations");
        assertEquals(0, ((PerfResult.Bw) many.rows().getFirst()).bwPeak());
        assertBad("invalid option -a with -D 2: duration mode doesn't run all sizes", "write_bw", "-a", "-D", "2");
        assertBad("invalid option -N for write_lat: no peak is only valid for bandwidth tests", "write_lat", "-N");
    }

    /**
     * print_report_bw's peak: the shortest time per message from the first request of a post list to a completion
     * a signaled CQE covers (every Q-th request, and the last one), over every such pair.
     */
    @Test
    void thePeakIsPerftestsBestStretchFromAPostToACompletion() {
        long[] posted = {0, 10, 20, 30, 40};
        long[] completed = {0, 50, 0, 70, 200}; // CQEs for requests 2 and 4 (Q = 2), and the last one, 5th
        // i = 0: 50/2 = 25, 70/4 = 17.5, 200/5 = 40; i = 1: 40, 20, 47.5; i = 2: 25, 60; ... best 17.5
        assertEquals(17.5, Bandwidth.peakNanosPerMessage(posted, completed, 1, 2), 1e-9);
        assertEquals(17.5, Bandwidth.peakNanosPerMessage(posted, completed, 2, 2), 1e-9, "lists of two: i = 0, 2, 4");
        assertEquals(25.0, Bandwidth.peakNanosPerMessage(new long[]{0, 10}, new long[]{0, 50}, 2, 2), 1e-9);
    }

    /**
     * perftest's {@code -U} and {@code -H} (print_report_lat): "#, usec" and one "i, value" line per sample before
     * the row, as measured and then sorted; latency tests only.
     */
    @Test
    void latencyToolsPrintTheirSamplesUnsortedAndSorted() {
        PerfResult r = run("read_lat", "-s", "8", "-n", "50", "-U", "-H");
        PerfResult.Lat row = (PerfResult.Lat) r.rows().getFirst();
        assertEquals(49, row.samples().size(), "one sample between each two of the 50 posts");
        String[] parts = r.report().split("#, usec\n");
        assertEquals(3, parts.length, r.report());
        List<String> unsorted = parts[1].lines().toList();
        List<String> sorted = parts[2].lines().takeWhile(l -> !l.startsWith(" 8 ")).toList();
        assertEquals(49, unsorted.size(), r.report());
        assertEquals(47, sorted.size(), "the two largest left out, as print_report_lat: " + r.report());
        assertEquals("1, " + Perftest.cFormatG(row.samples().getFirst()), unsorted.getFirst());
        assertEquals("49, " + Perftest.cFormatG(row.samples().getLast()), unsorted.getLast());
        List<Double> values = sorted.stream().map(l -> Double.parseDouble(l.substring(l.indexOf(", ") + 2))).toList();
        assertEquals(values.stream().sorted().toList(), values, "sorted");
        assertEquals(Perftest.cFormatG(row.tMin()), sorted.getFirst().substring(3));
        assertTrue(run("read_lat", "-s", "8", "-n", "20").rows().getFirst() instanceof PerfResult.Lat l && l.samples().isEmpty(),
                "kept only when asked for");
        assertBad("invalid option -H for write_bw: sample reports are for latency tests", "write_bw", "-H");
    }

    /**
     * perftest 6.29's latency tests run no warm-up iterations ({@code write_lat.c}, {@code read_lat.c},
     * {@code send_lat.c} call no {@code perform_warm_up}); {@code print_report_lat} takes a sample between each two
     * posts, so the first round trip is in none, and leaves the {@code LAT_MEASURE_TAIL} (2) largest out: t_max is
     * {@code delta[measure_cnt]}, the smaller of the two, t_typical {@code get_median} of those kept. Fewer than {@code MIN_ITER} (5) iterations
     * are refused.
     */
    @ParameterizedTest
    @ValueSource(strings = {"write_lat", "read_lat", "send_lat", "atomic_lat"})
    void latencyFiguresLeaveTheFirstRoundTripAndTheTailOut(String tool) {
        PerfResult r = run(tool, "-n", "40", "-U");
        PerfResult.Lat row = (PerfResult.Lat) r.rows().getFirst();
        assertEquals(40, row.iterations());
        assertEquals(39, row.samples().size(), "n posts, n - 1 samples");
        List<Double> sorted = row.samples().stream().sorted().toList();
        assertEquals(sorted.get(37), row.tMax(), "delta[measure_cnt]: the second largest");
        assertEquals(sorted.getFirst(), row.tMin());
        assertEquals(sorted.get(18), row.tTypical(), "get_median of the 37 kept: the middle one");
        assertBad("invalid iterations -n 4 for " + tool + ": latency tests need at least 5", tool, "-n", "4");
    }

    /** C's %g, as perftest prints samples. */
    @Test
    void samplesAreFormattedAsCsPercentG() {
        assertEquals("1.234", Perftest.cFormatG(1.234));
        assertEquals("2", Perftest.cFormatG(2.0));
        assertEquals("0.5", Perftest.cFormatG(0.5));
        assertEquals("123457", Perftest.cFormatG(123456.7));
        assertEquals("1.23457e+06", Perftest.cFormatG(1234567));
        assertEquals("1.234e-05", Perftest.cFormatG(0.00001234));
        assertEquals("0.0001", Perftest.cFormatG(0.0001));
        assertEquals("0", Perftest.cFormatG(0));
    }

    /** perftest_parameters.c: {@code margin = duration / 4} when -D is given, left out at both ends. */
    @Test
    void durationLeavesOutPerftestsMarginAtBothEnds() {
        assertEquals(0, Bandwidth.marginNanos(0));
        assertEquals(0, Bandwidth.marginNanos(3));
        assertEquals(1_000_000_000L, Bandwidth.marginNanos(4));
        assertEquals(1_000_000_000L, Bandwidth.marginNanos(7));
        assertEquals(2_000_000_000L, Bandwidth.marginNanos(8));
    }

    @Test
    void gogoCommandRunsOnTheRuntimesMachineAndCore() {
        var cmd = new PerfCommands(machine, core);
        String out = cmd.perf("write_bw", "-s", "65536", "-n", "50");
        assertTrue(out.contains("RDMA_Write BW Test") && out.contains(BW_COLUMNS + "\n"), out);
        assertTrue(out.matches("(?s).*\\n 65536 +50 +.*"), out);
        ErrnoException e = assertThrows(ErrnoException.class, () -> cmd.perf("write_bw", "-q", "999"));
        assertTrue(e.getMessage().contains("-q 999"), e.getMessage());
    }

    /**
     * Flips byte 7 of the first QP's destination buffer on both ends: every tool checks at least one of them (the
     * server's for write and send, the client's for read), and atomic_bw's counter is the server's first 8 bytes.
     */
    private static final Perftest.BeforeCheck CORRUPT = (cfg, client, server) -> {
        for (Side side : List.of(client, server)) {
            long at = side.dst(0) + 7;
            byte[] b = side.read(at, 1);
            b[0] ^= (byte) 0xff;
            side.write(at, b);
        }
    };

    @ParameterizedTest
    @ValueSource(strings = {"write_bw", "read_bw", "send_bw", "write_lat", "read_lat", "send_lat"})
    void aCorruptedTargetBufferFailsTheByteCheckWithEio(String tool) {
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> Perftest.run(machine, core, PerfConfig.parse(tool, "-s", "100", "-n", "20"), CORRUPT));
        assertEquals(Errno.EIO, e.errno());
        assertTrue(e.getMessage().startsWith("EIO: perftest: " + tool + " size 100 QP 0: ")
                && e.getMessage().endsWith(" differs from the source at byte 7"), e.getMessage());
        assertEquals(20, run(tool, "-s", "100", "-n", "20").rows().getFirst().iterations(),
                "the machine is fine afterwards: the next run checks out");
    }

    /**
     * ib_atomic_lat: one 8-byte FETCH_AND_ADD at a time, the round trip timed; each returns the counter as the adds
     * before it left it, and the server's counter ends at the number of adds.
     */
    @Test
    void atomicLatencyTimesOneFetchAndAddAtATimeAndChecksTheCounter() {
        PerfResult r = run("atomic_lat", "-n", "200");
        assertTrue(r.report().contains("Atomic FETCH_AND_ADD Latency Test") && r.report().contains(LAT_COLUMNS + "\n"),
                r.report());
        PerfResult.Lat l = assertInstanceOf(PerfResult.Lat.class, r.rows().getFirst());
        assertEquals(8, l.bytes());
        assertEquals(200, l.iterations());
        assertTrue(l.tMin() > 0 && l.tMin() <= l.tTypical() && l.tTypical() <= l.tMax(), l.toString());

        ErrnoException e = assertThrows(ErrnoException.class,
                () -> Perftest.run(machine, core, PerfConfig.parse("atomic_lat", "-n", "50"), CORRUPT));
        assertEquals(Errno.EIO, e.errno());
        assertTrue(e.getMessage().startsWith("EIO: perftest: atomic_lat: counter on rxe1 is ")
                && e.getMessage().endsWith(" after 50 fetch-and-adds of 1"), e.getMessage());
        assertBad("invalid size -s 16 for atomic_lat: atomics are 8 bytes", "atomic_lat", "-s", "16");
        assertBad("invalid inline size -I 8 for atomic_lat", "atomic_lat", "-I", "8");
    }

    /**
     * perftest's {@code -b}: both ends send at once over the same RC QPs, the row sums both directions, and the bytes
     * (or counters) of both directions are checked.
     */
    @ParameterizedTest
    @ValueSource(strings = {"write_bw", "read_bw", "send_bw", "atomic_bw"})
    void bidirectionalRunsBothWaysAndSumsThem(String tool) {
        PerfResult r = run(tool, "-b", "-n", "100", "-t", "16", "-Q", "4");
        assertTrue(r.report().contains(" Bidirectional BW Test\n"), r.report());
        assertEquals(200, r.rows().getFirst().iterations(), "100 each way");
    }

    @Test
    void bidirectionalChecksBothDirectionsAndIsForBandwidthTests() {
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> Perftest.run(machine, core, PerfConfig.parse("write_bw", "-b", "-s", "100", "-n", "20"), CORRUPT));
        assertEquals(Errno.EIO, e.errno());
        assertTrue(e.getMessage().endsWith(" differs from the source at byte 7"), e.getMessage());
        assertBad("invalid option -b for write_lat: bidirectional runs are for bandwidth tests", "write_lat", "-b");
    }

    /**
     * perftest's {@code -c}: UC carries SEND and RDMA WRITE, UD only SEND, with the 40-byte GRH at the head of each
     * receive buffer and messages of at most the path MTU ({@code -a} stops there); every byte still checked.
     */
    @ParameterizedTest
    @ValueSource(strings = {"UC:write_bw", "UC:send_bw", "UC:write_lat", "UC:send_lat", "UD:send_bw", "UD:send_lat"})
    void unreliableTransportsMoveEveryByte(String spec) {
        String type = spec.substring(0, 2);
        String tool = spec.substring(3);
        PerfResult r = run(tool, "-c", type, "-s", "512", "-n", "200", "-t", "16");
        assertTrue(r.report().contains(" Connection type : " + type + "\t"), r.report());
        assertEquals(200, r.rows().getFirst().iterations());
    }

    @Test
    void udRunsSizesUpToThePathMtuAndRefusesLargerOnes() {
        PerfResult r = run("send_bw", "-c", "UD", "-a", "-n", "2", "-t", "4");
        assertEquals(List.of(2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
                r.rows().stream().map(PerfResult.Row::bytes).toList());
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> Perftest.run(machine, core, PerfConfig.parse("send_bw", "-c", "UD", "-s", "2048")));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("invalid size -s 2048 for UD"), e.getMessage());
        assertBad("invalid connection type -c XRC: RC, UC or UD", "send_bw", "-c", "XRC");
        assertBad("invalid connection type -c UC for read_bw: UC carries SEND and RDMA WRITE only", "read_bw", "-c", "UC");
        assertBad("invalid connection type -c UD for write_bw: UD carries SEND only", "write_bw", "-c", "UD");
    }

    /** Receives left over from one size of {@code -a} serve the next, larger one (each covers its whole region). */
    @ParameterizedTest
    @ValueSource(strings = {"send_bw", "send_lat"})
    void sendToolsRunEverySize(String tool) {
        PerfResult r = run(tool, "-a", "-n", "5", "-t", "2");
        assertEquals(23, r.rows().size());
        assertTrue(r.rows().stream().allMatch(x -> x.iterations() == 5), r.report());
    }

    /**
     * perftest's {@code -e}: the poller sleeps on its completion channel (ibv_get_cq_event, ack, re-arm) instead of
     * busy polling; not with -D, and not for write_lat, which polls its buffer.
     */
    @ParameterizedTest
    @ValueSource(strings = {"write_bw", "read_bw", "send_bw", "atomic_bw", "read_lat", "send_lat", "atomic_lat"})
    void eventsInsteadOfBusyPolling(String tool) {
        PerfResult r = run(tool, "-e", "-n", "300", "-t", "16", "-Q", "4");
        assertEquals(300, r.rows().getFirst().iterations());
        assertBad("invalid option -e with -D 2: duration mode doesn't work with events", tool, "-e", "-D", "2");
        assertBad("invalid option -e for write_lat: it polls its buffer, not a CQ", "write_lat", "-e");
    }

    /**
     * perftest's {@code --use_srq}: the receiving end's QPs share one receive queue (any QP's message may land in any
     * of its buffers, so every QP sends the same bytes); SEND tests only.
     */
    @ParameterizedTest
    @ValueSource(strings = {"send_bw", "send_lat"})
    void aSharedReceiveQueueServesEveryQp(String tool) {
        PerfResult r = tool.equals("send_bw") ? run(tool, "--use_srq", "-q", "3", "-n", "200", "-t", "16")
                : run(tool, "--use_srq", "-n", "200");
        assertTrue(r.report().contains("Using SRQ      : ON"), r.report());
        assertEquals(tool.equals("send_bw") ? 600 : 200, r.rows().getFirst().iterations());
        assertBad("invalid option --use_srq for write_bw: a shared receive queue is for SEND tests", "write_bw",
                "--use_srq");
    }

    /** send_bw never outruns the receives posted: with several QPs it met RNR NAKs and waited on their timer. */
    @Test
    void sendBandwidthMeetsNoReceiverNotReady() {
        long before = core.device("rxe0").orElseThrow().hwCounters(1).get("rcvd_rnr_err");
        run("send_bw", "-q", "4", "-n", "300", "-s", "4096");
        assertEquals(before, core.device("rxe0").orElseThrow().hwCounters(1).get("rcvd_rnr_err"));
    }

    @Test
    void aCorruptedAtomicCounterFailsTheCheckWithEio() {
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> Perftest.run(machine, core, PerfConfig.parse("atomic_bw", "-n", "50"), CORRUPT));
        assertEquals(Errno.EIO, e.errno());
        assertTrue(e.getMessage().startsWith("EIO: perftest: atomic_bw QP 0: counter on rxe1 is ")
                && e.getMessage().endsWith(" after 50 fetch-and-adds of 1"), e.getMessage());
    }

    /**
     * perftest's {@code -a} prints each row as soon as its size is measured ({@code write_lat.c}: the size loop calls
     * {@code print_report_lat} after each {@code run_iter_lat_write}): the first row is out before the second size's
     * byte check runs.
     */
    @Test
    void allSizesPrintEachRowAsSoonAsItIsMeasured() {
        List<String> printed = new ArrayList<>();
        List<Boolean> firstRowOut = new ArrayList<>();
        Perftest.BeforeCheck look = (cfg, c, s) -> {
            if (cfg.size() == 4) {
                firstRowOut.add(printed.stream().anyMatch(t -> t.startsWith(" 2 ")));
            }
        };
        PerfResult r = Perftest.run(machine, core, PerfConfig.parse("write_lat", "-a", "-n", "5"), look, new Random(1),
                printed::add);
        assertEquals(List.of(true), firstRowOut, "the row of size 2 was printed when size 4 was being checked");
        assertEquals(r.report(), String.join("", printed));
    }

    @Test
    void theCommandLineExitsNonZeroWithoutAReportWhenTheCheckFails() {
        String[] args = {"write_bw", "-s", "4096", "-n", "20"};
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(args, (cfg, o) -> Perftest.run(machine, core, cfg, CORRUPT, new Random(1), o::print),
                new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
        assertEquals(1, status);
        assertTrue(out.toString(StandardCharsets.UTF_8).endsWith(BW_COLUMNS + "\n"),
                "the header, as perftest prints it before it runs, but no row for a run whose bytes are wrong: " + out);
        assertEquals("EIO: perftest: write_bw size 4096 QP 0: target buffer on rxe1 differs from the source at byte 7\n",
                err.toString(StandardCharsets.UTF_8).replace(System.lineSeparator(), "\n"));

        out.reset();
        err.reset();
        status = Main.run(args, (cfg, o) -> Perftest.run(machine, core, cfg, o),
                new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
        assertEquals(0, status, err.toString(StandardCharsets.UTF_8));
        assertTrue(out.toString(StandardCharsets.UTF_8).contains(BW_COLUMNS + "\n"));
    }

    @Test
    void anUnknownBenchPartIsEinvalAndRunsNothing() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(new String[]{"bench-part", "nope"}, (cfg, o) -> Assertions.fail("no tool runs"),
                new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
        assertEquals(1, status);
        assertEquals("", out.toString(StandardCharsets.UTF_8));
        assertEquals("EINVAL: unknown bench part 'nope': one of [bw, rate, lat]\n",
                err.toString(StandardCharsets.UTF_8).replace(System.lineSeparator(), "\n"));
    }

    @Test
    void badOptionsAreEinvalNamingTheValue() {
        assertBad("invalid size -s 0", "write_bw", "-s", "0");
        assertBad("invalid size -s 16777216", "write_bw", "-s", "16777216");
        assertBad("invalid value 'abc' for -n", "write_bw", "-n", "abc");
        assertBad("invalid iterations -n -5", "read_bw", "-n", "-5");
        assertBad("invalid number of QPs -q 0", "send_bw", "-q", "0");
        assertBad("invalid tx depth -t 0", "write_bw", "-t", "0");
        assertBad("invalid duration -D -1", "write_lat", "-D", "-1");
        assertBad("invalid size -s 64 for atomic_bw", "atomic_bw", "-s", "64");
        assertBad("unknown option '--bogus'", "write_bw", "--bogus");
        assertBad("unknown test 'write_bandwidth'", "write_bandwidth");
        assertBad("option -s needs a value", "write_bw", "-s");
        assertBad("latency tests use one QP", "write_lat", "-q", "2");
        assertBad("invalid inline size -I -1", "write_bw", "-I", "-1");
        assertBad("invalid inline size -I 8 for read_bw: inline data is for SEND and RDMA WRITE", "read_bw", "-I", "8");
        assertBad("invalid inline size -I 8 for atomic_bw", "atomic_bw", "-I", "8");
        assertBad("invalid post list -l 0: must be 1..tx depth (128)", "write_bw", "-l", "0");
        assertBad("invalid post list -l 64: must be 1..tx depth (32)", "write_bw", "-t", "32", "-l", "64");
        assertBad("invalid post list -l 12: must be a multiple of CQ moderation -Q 8", "write_bw", "-l", "12", "-Q", "8");
    }

    /**
     * perftest's post list ({@code -l}, perftest_parameters.c): the CQ moderation becomes its size unless -Q is
     * given, and a run posts whole lists while they fit the send queue, the last one of a counted run short.
     */
    @Test
    void postListsSetTheCqModerationAndMoveEveryIteration() {
        PerfConfig c = PerfConfig.parse("write_bw", "-t", "32", "-l", "16");
        assertEquals(16, c.postList());
        assertEquals(16, c.cqMod(), "CQ moderation = post list size when -Q is not given");
        assertEquals(8, PerfConfig.parse("write_bw", "-t", "32", "-l", "16", "-Q", "8").cqMod());
        assertEquals(1, PerfConfig.parse("write_bw").postList(), "perftest's default: one work request per post");

        PerfResult r = run("write_bw", "-s", "64", "-n", "100", "-t", "32", "-l", "16");
        assertEquals(100, r.rows().getFirst().iterations(), "six lists of 16 and one of 4");
        assertTrue(r.report().contains(" Post List       : 16\n"), r.report());
    }

    @ParameterizedTest
    @ValueSource(strings = {"write_bw", "send_bw", "write_lat", "send_lat"})
    void inlineSendsAndWritesCarryTheirBytesInTheWorkRequest(String tool) {
        // ibv_post_send(3): IBV_SEND_INLINE copies the data at post time, the lkey is not looked at
        PerfResult r = run(tool, "-s", "64", "-n", "200", "-I", "128");
        assertTrue(r.report().contains(" Max inline data : 128[B]"), r.report());
        assertEquals(200, r.rows().getFirst().iterations(), "and the byte check passed");
    }

    @Test
    void anInlineSizeBeyondTheDevicesLimitIsRefusedBeforeAnythingIsSetUp() {
        int maxInline = core.device("rxe0").orElseThrow().attr().maxInlineData();
        int contexts = core.device("rxe0").orElseThrow().contextCount();
        long frames = machine.memory().allocatedFrames();
        ErrnoException e = assertThrows(ErrnoException.class, () -> Perftest.run(machine, core,
                PerfConfig.parse("write_bw", "-s", "64", "-I", String.valueOf(maxInline + 1))));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("invalid inline size -I " + (maxInline + 1) + ": rxe0 takes at most "
                + maxInline), e.getMessage());
        assertEquals(contexts, core.device("rxe0").orElseThrow().contextCount(), "no context left open");
        assertEquals(frames, machine.memory().allocatedFrames(), "no memory left allocated");
    }

    private static void assertBad(String text, String... args) {
        ErrnoException e = assertThrows(ErrnoException.class, () -> PerfConfig.parse(args));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains(text), e.getMessage());
    }
}
