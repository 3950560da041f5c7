package dev.dmaplane.perftest;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.dmaplane.driver.softroce.SoftRoceDriver;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.perftest.impl.PerfCommands;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.testing.FuzzRuns;
import dev.dmaplane.testing.GogoCommands;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * Fuzz target of {@code dmaplane:perf} (examples/perftest/README.md, perftest's {@code perftest_parameters.c}
 * options): fuzzed command lines, parsed by {@link PerfConfig#parse}, and those within the harness's work bound run
 * through the command between rxe0 and rxe1 of the default machine with the Soft-RoCE driver bound. The rule is the
 * issue's: the command answers with perftest's report or an {@code ErrnoException}, within 2 s; anything else is a
 * finding. A user may ask for a run of an hour ({@code -D 3600}); the harness, not the parser, bounds the work: a line
 * that would run for a duration or move more than {@link #MAX_MESSAGES} messages or {@link #MAX_BYTES} bytes runs with
 * fewer iterations ({@link #bounded}), one that would register more than {@link #MAX_REGISTERED} bytes or queue more
 * than {@link #MAX_QUEUED} work requests is left out, and both are counted. Regression inputs are in
 * {@code PerfCommandsFuzzTestInputs/arguments/}.
 */
class PerfCommandsFuzzTest {
    /**
     * Messages one input's run may move, both directions, all sizes: perftest's default 1000 round trips of a latency
     * tool take 2-5 s under Jazzer's instrumentation on a loaded 2-core machine, 200 take well under 2 s.
     */
    static final long MAX_MESSAGES = 400;
    /** Bytes one input's run may move. */
    static final long MAX_BYTES = 8L << 20;
    /** Bytes one input's run may register (a send and a receive region per QP on each end). */
    static final long MAX_REGISTERED = 32L << 20;
    /** Work requests one input's queues may hold ({@code -q} times {@code -t}). */
    static final long MAX_QUEUED = 16384;

    private static final FuzzRuns RUNS = new FuzzRuns("perf-command", Duration.ofSeconds(2));
    private static final String[] TESTS = {"write_bw", "read_bw", "send_bw", "atomic_bw", "write_lat", "read_lat",
            "send_lat", "atomic_lat", "ib_write_bw", "ib_send_lat", "ib_", "write", ""};
    private static final Set<String> VALUED = Set.of("-c", "--connection", "-s", "--size", "-n", "--iters", "-q",
            "--qp", "-D", "--duration", "-t", "--tx-depth", "-Q", "--cq-mod", "-I", "--inline_size", "-l",
            "--post_list");
    private static final String[] OPTIONS = {"-a", "--all", "--report_gbits", "-b", "--bidirectional", "-e",
            "--events", "--use_srq", "-N", "--noPeak", "-H", "--report-histogram", "-U", "--report-unsorted", "-c",
            "--connection", "-s", "--size", "-n", "--iters", "-q", "--qp", "-D", "--duration", "-t", "--tx-depth",
            "-Q", "--cq-mod", "-I", "--inline_size", "-l", "--post_list", "-x", "--", "-"};
    private static final String[] VALUES = {"0", "1", "2", "5", "8", "16", "64", "100", "128", "1024", "1025", "4096",
            "4097", "65536", "8388608", "8388609", "-1", "2147483647", "2147483648", "99999999999", "0x10", "+3",
            " 5", "RC", "UC", "UD", "XRC", "rc", ""};
    private static Machine machine;
    private static RdmaCore core;
    private static SoftRoceDriver driver;
    private static GogoCommands commands;

    @BeforeAll
    static void boot() {
        machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
        core = new RdmaCore(machine.tracer());
        driver = new SoftRoceDriver(core);
        machine.devices().registerDriver(driver);
        commands = GogoCommands.of(new PerfCommands(machine, core));
        // the first run loads the classes of the whole data path: not part of any input's 2 s
        Perftest.run(machine, core, PerfConfig.parse("send_lat", "-n", "5"));
    }

    @AfterAll
    static void shutdown() {
        RUNS.report();
        machine.devices().unregisterDriver(driver);
        core.close();
        machine.close();
    }

    /** A test name and up to 10 options, most with a value where the option takes one. */
    @FuzzTest
    void arguments(FuzzedDataProvider data) {
        List<String> args = new ArrayList<>();
        args.add(data.consumeBoolean() ? data.pickValue(TESTS) : data.consumeString(16));
        int options = data.consumeInt(0, 10);
        for (int i = 0; i < options; i++) {
            String option = data.consumeInt(0, 7) != 0 ? data.pickValue(OPTIONS) : data.consumeString(12);
            args.add(option);
            if (VALUED.contains(option) && data.consumeInt(0, 9) != 0) {
                args.add(data.consumeBoolean() ? data.pickValue(VALUES) : String.valueOf(data.consumeInt()));
            }
        }
        RUNS.run(() -> commands.commandLine("perf", args), () -> {
            PerfConfig cfg = PerfConfig.parse(args.toArray(String[]::new));
            List<String> run = bounded(args, cfg);
            if (run.isEmpty()) {
                return "left out: more work than the harness allows";
            }
            commands.call("perf", run).orElseThrow(() -> new AssertionError("dmaplane:perf takes String..."));
            return run.size() == args.size() ? FuzzRuns.ACCEPTED : "accepted with fewer iterations";
        });
    }

    /**
     * The command line the harness runs for {@code args}: the same if its work is within the bound; else, if fewer
     * iterations bring it there, {@code args} followed by {@code -D 0 -n N} (the last value of an option counts); else
     * nothing. Only lines the parser accepted as they were get here, so the parser sees every fuzzed line unchanged.
     */
    static List<String> bounded(List<String> args, PerfConfig cfg) {
        List<Integer> sizes = cfg.sizes();
        long directions = cfg.bidirectional() || cfg.test().latency ? 2 : 1;
        long messagesPerIteration = cfg.qps() * directions * sizes.size();
        long bytesPerIteration = cfg.qps() * directions * sizes.stream().mapToLong(Integer::longValue).sum();
        long largest = sizes.stream().mapToLong(Integer::longValue).max().orElse(0);
        if (4 * largest * cfg.qps() > MAX_REGISTERED || (long) cfg.qps() * cfg.txDepth() > MAX_QUEUED) {
            return List.of();
        }
        long n = Math.min(cfg.iterations(), Math.min(MAX_MESSAGES / messagesPerIteration, MAX_BYTES / bytesPerIteration));
        if (n < 1) {
            return List.of();
        }
        if (n == cfg.iterations() && cfg.duration() == 0) {
            return args;
        }
        List<String> run = new ArrayList<>(args);
        run.addAll(List.of("-D", "0", "-n", String.valueOf(n)));
        return run;
    }
}
