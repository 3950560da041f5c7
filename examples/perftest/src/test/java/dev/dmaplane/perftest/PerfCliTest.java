package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.perftest.impl.PerfCommands;
import dev.dmaplane.rdma.verbs.QpType;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * perftest's command line on picocli, without a machine: perftest's option names ({@code perftest_parameters.c},
 * {@code usage()}: {@code -s/--size}, {@code -n/--iters}, {@code -a/--all}, {@code -c/--connection},
 * {@code --report_gbits}, ...), the {@code ib_} binaries' names, POSIX bundling and {@code --opt=value} (picocli
 * user manual, "Short (POSIX) Options", "Option-Parameter Separators"), and numbers that say what is wrong with them.
 */
class PerfCliTest {
    private record Run(int status, String out, String err, List<PerfConfig> configs) {
    }

    /** Runs the command line with a tool that records its configuration instead of running. */
    private static Run main(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        List<PerfConfig> configs = new ArrayList<>();
        Main.Tool tool = (cfg, o) -> {
            configs.add(cfg);
            o.print("ran " + cfg.test().tool + "\n");
            return new PerfResult(cfg, List.of(), "ran " + cfg.test().tool + "\n");
        };
        int status = Main.run(args, tool, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Run(status, out.toString(StandardCharsets.UTF_8),
                err.toString(StandardCharsets.UTF_8).replace(System.lineSeparator(), "\n"), configs);
    }

    @Test
    void bundledShortOptionsAndEqualsSignsParseAsTheirLongForms() {
        PerfConfig bundled = PerfConfig.parse("write_bw", "-abN", "-s4096", "--iters=20", "--qp=2", "-c", "UC");
        assertTrue(bundled.all() && bundled.bidirectional() && bundled.noPeak());
        assertEquals(4096, bundled.size());
        assertEquals(20, bundled.iterations());
        assertEquals(2, bundled.qps());
        assertEquals(QpType.UC, bundled.connection());
        assertEquals(PerfConfig.parse("write_bw", "--all", "--bidirectional", "--noPeak", "--size", "4096", "-n", "20",
                "-q", "2", "--connection=UC"), bundled);
        assertEquals(PerfConfig.parse("send_lat"), PerfConfig.parse("ib_send_lat"), "perftest's binary names");
        assertEquals(PerfConfig.defaults(PerfConfig.Test.READ_LAT), PerfConfig.parse("read_lat"));
    }

    /** Numbers that are not numbers, or do not fit, say so and name the option; none is a NumberFormatException. */
    @Test
    void badNumbersSayWhatIsWrongWithThem() {
        assertBad("perftest: invalid value 'abc' for -n: not a whole number", "write_bw", "-n", "abc");
        assertBad("perftest: invalid value '0x10' for -s: not a whole number", "write_bw", "-s", "0x10");
        assertBad("perftest: invalid value '99999999999' for -s: out of range (-2147483648..2147483647)",
                "write_bw", "--size=99999999999");
        assertBad("perftest: invalid value '2147483648' for -t: out of range (-2147483648..2147483647)",
                "write_bw", "-t", "2147483648");
        assertBad("perftest: invalid size -s 0: must be 1..8388608", "write_bw", "-s", "0");
        assertBad("perftest: invalid value '' for -q: not a whole number", "write_bw", "-q", "");
        assertBad("perftest: invalid connection type -c XRC: RC, UC or UD", "send_bw", "-c", "XRC");
        assertBad("perftest: option -s needs a value", "write_bw", "-s");
        assertBad("perftest: unknown option '-x'", "write_bw", "-x");
        assertBad("perftest: unknown test 'write' (one of write_bw, read_bw, send_bw, atomic_bw, write_lat, read_lat,"
                + " send_lat, atomic_lat)", "write");
        assertBad("perftest: no test given (one of write_bw, read_bw, send_bw, atomic_bw, write_lat, read_lat,"
                + " send_lat, atomic_lat)");
        assertEquals(3, PerfConfig.parse("write_bw", "-s", "+3").size(), "strtol takes a sign");
    }

    /** A usage error is perftest's one line, then the tool's help hint, status 1 as perftest's; nothing runs. */
    @Test
    void aUsageErrorIsOneLineAndTheHint() {
        Run r = main("write_bw", "-s", "abc");
        assertEquals(1, r.status());
        assertEquals("EINVAL: perftest: invalid value 'abc' for -s: not a whole number\n"
                + "Try 'dmaplane perf write_bw --help' for more information.\n", r.err());
        assertEquals("", r.out());
        assertTrue(r.configs().isEmpty());

        Run range = main("write_lat", "-q", "2");
        assertEquals(1, range.status());
        assertEquals("EINVAL: perftest: invalid number of QPs -q 2: latency tests use one QP\n"
                + "Try 'dmaplane perf write_lat --help' for more information.\n", range.err());

        Run test = main("fly");
        assertEquals(1, test.status());
        assertTrue(test.err().endsWith("\nTry 'dmaplane perf --help' for more information.\n"), test.err());
        assertFalse(test.err().contains("\tat "), test.err());

        Run bench = main("bench", "x");
        assertEquals(1, bench.status());
        assertEquals("EINVAL: perftest: invalid value 'x' for SECS: not a whole number\n"
                + "Try 'dmaplane perf bench --help' for more information.\n", bench.err());
    }

    @Test
    void helpAndVersionAnswerWithoutRunning() {
        Run root = main("--help");
        assertEquals(0, root.status(), root.err());
        assertTrue(root.out().startsWith("Usage: dmaplane perf [-hV] TEST"), root.out());
        for (PerfConfig.Test t : PerfConfig.Test.values()) {
            assertTrue(root.out().contains("\n  " + t.tool + ", ib_" + t.tool + " "), t.tool + ": " + root.out());
        }
        assertTrue(root.out().contains("\n  bench ") && root.out().contains("\n  gpudirect "), root.out());
        assertFalse(root.out().contains("bench-part"), "an internal command: " + root.out());

        Run tool = main("write_bw", "-h");
        assertEquals(0, tool.status());
        for (String option : List.of("-s, --size=SIZE", "-n, --iters=N", "-a, --all", "-q, --qp=N", "-D, --duration=SECS",
                "-t, --tx-depth=N", "-Q, --cq-mod=N", "-l, --post_list=N", "-I, --inline_size=BYTES",
                "-c, --connection=TYPE", "-b, --bidirectional", "-e, --events", "--use_srq", "-N, --noPeak",
                "-H, --report-histogram", "-U, --report-unsorted", "--report_gbits")) {
            assertTrue(tool.out().contains(option), option + ": " + tool.out());
        }
        assertTrue(tool.configs().isEmpty());

        Run version = main("--version");
        assertEquals(0, version.status());
        assertTrue(version.out().matches("dmaplane perftest \\d+\\.\\d+\\.\\d+(-SNAPSHOT)?\\nJava .*\\n"), version.out());
    }

    @Test
    void aToolRunsWithTheParsedConfiguration() {
        Run r = main("ib_read_bw", "--size=256", "-n", "10");
        assertEquals(0, r.status(), r.err());
        assertEquals("ran read_bw\n", r.out());
        assertEquals(List.of(PerfConfig.parse("read_bw", "-s", "256", "-n", "10")), r.configs());
    }

    /** {@code dmaplane:perf --help} in the shell answers with the same usage text, without a machine. */
    @Test
    void theGogoCommandAnswersHelpWithTheModelsUsage() {
        PerfCommands gogo = new PerfCommands(null, null);
        assertTrue(gogo.perf("--help").startsWith("Usage: dmaplane:perf [-hV] TEST"), gogo.perf("--help"));
        String tool = gogo.perf("send_bw", "-h");
        assertTrue(tool.startsWith("Usage: dmaplane:perf send_bw ") && tool.contains("--use_srq"), tool);
    }

    private static void assertBad(String message, String... args) {
        ErrnoException e = assertThrows(ErrnoException.class, () -> PerfConfig.parse(args));
        assertEquals(Errno.EINVAL, e.errno());
        assertEquals("EINVAL: " + message, e.getMessage());
    }
}
