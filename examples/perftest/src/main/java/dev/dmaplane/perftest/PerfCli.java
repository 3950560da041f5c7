package dev.dmaplane.perftest;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.perftest.PerfConfig.Test;
import dev.dmaplane.rdma.verbs.QpType;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.IVersionProvider;
import picocli.CommandLine.MissingParameterException;
import picocli.CommandLine.Model.ArgSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.TypeConversionException;
import picocli.CommandLine.UnmatchedArgumentException;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.math.BigInteger;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.List;
import java.util.Optional;
import java.util.Properties;
import java.util.regex.Pattern;

/**
 * perftest's command line as one picocli model: a subcommand per tool, named as perftest's binaries are
 * ({@code write_bw}, alias {@code ib_write_bw}), each with perftest's option names ({@code perftest_parameters.c}:
 * {@code -s/--size}, {@code -n/--iters}, {@code -a/--all}, ...), bundled short options ({@code -abe}) and
 * {@code --opt=value}; {@code bench} and {@code gpudirect} run the benchmark figures. Parse errors are perftest's
 * {@code EINVAL} naming the bad word ({@link #errno}).
 */
@Command(name = "perf", mixinStandardHelpOptions = true, versionProvider = PerfCli.Version.class,
        synopsisSubcommandLabel = "TEST",
        description = {"perftest's tools between rxe0 and rxe1 of a machine of their own (./dmaplane perf) or of the"
                + " runtime's (dmaplane:perf); the bytes moved are checked, exit 1 if they differ (EIO).",
                "'perf TEST --help' lists a tool's options."})
final class PerfCli {
    /** Columns of the usage text. */
    static final int USAGE_WIDTH = 110;
    /** The usage hint that follows a usage error. */
    private static final String HINT = "Try '%s --help' for more information.";

    private PerfCli() {
    }

    /** The root command line named {@code name}, with a subcommand per tool and the benchmark commands. */
    static CommandLine commandLine(String name) {
        CommandLine cli = new CommandLine(new PerfCli());
        cli.setCommandName(name);
        for (Test t : Test.values()) {
            CommandLine tool = new CommandLine(new ToolCommand(t));
            tool.getCommandSpec().usageMessage().description(t.title + ", as perftest's ib_" + t.tool);
            cli.addSubcommand(t.tool, tool, "ib_" + t.tool);
        }
        cli.addSubcommand(new Bench.BenchCommand());
        cli.addSubcommand(new Bench.PartCommand());
        cli.addSubcommand(new WireBench.WireBenchCommand());
        cli.addSubcommand(new GpuDirectCommand());
        cli.setUsageHelpWidth(USAGE_WIDTH);
        return cli;
    }

    /**
     * {@link PerfConfig#parse}: the tool's options as a checked configuration, for a run in this process (a host,
     * {@code -p}, {@code -d} or {@code --ip} are {@code EINVAL}: runs between processes start from {@link Main}; so is
     * {@code --pcap}, which captures the HCAs {@link Main} brings up).
     */
    static PerfConfig parse(String... args) {
        ToolCommand t = tool(args);
        if (t.wire().isPresent()) {
            throw bad("a run between processes (HOST, -p, -d, --ip) starts from ./dmaplane perf, not here");
        }
        if (t.pcap != null) {
            throw bad("--pcap " + t.pcap + " captures the HCAs ./dmaplane perf brings up; on a machine that has"
                    + " them already, turn the driver's capture on: rxe:pcap FILE, siw:pcap FILE");
        }
        return t.config();
    }

    /** The configuration of a command line that may name a server or a port: what a server reads from its client. */
    static PerfConfig parseAny(String... args) {
        return tool(args).config();
    }

    private static ToolCommand tool(String... args) {
        CommandLine cli = commandLine("perf");
        try {
            CommandLine.ParseResult parsed = cli.parseArgs(args);
            if (!parsed.hasSubcommand() || !(parsed.subcommand().commandSpec().userObject() instanceof ToolCommand t)) {
                throw bad("no test given (one of " + tools() + ")");
            }
            return t;
        } catch (ParameterException e) {
            throw errno(e);
        }
    }

    /** The usage hint of the command a usage error happened in. */
    static String hint(CommandLine where) {
        return HINT.formatted(where.getCommandSpec().qualifiedName());
    }

    /** A picocli parse error as perftest says it: {@code EINVAL}, naming the option and the bad word. */
    static ErrnoException errno(ParameterException e) {
        CommandLine where = e.getCommandLine();
        if (e instanceof UnmatchedArgumentException u && !u.getUnmatched().isEmpty()) {
            String word = u.getUnmatched().getFirst();
            if (where.getCommandSpec().parent() == null && !word.startsWith("-")) {
                return bad("unknown test '" + word + "' (one of " + tools() + ")");
            }
            return bad("unknown option '" + word + "'");
        }
        if (e instanceof MissingParameterException m && !m.getMissing().isEmpty()
                && m.getMissing().getFirst() instanceof OptionSpec o) {
            return bad("option " + o.shortestName() + " needs a value");
        }
        if (e.getCause() instanceof WholeMessage whole) {
            return bad(whole.getMessage());
        }
        if (e.getCause() instanceof TypeConversionException t && e.getArgSpec() != null) {
            return bad("invalid value '" + e.getValue() + "' for " + name(e.getArgSpec()) + ": " + t.getMessage());
        }
        return bad(e.getMessage());
    }

    private static String name(ArgSpec arg) {
        return arg instanceof OptionSpec o ? o.shortestName() : arg.paramLabel();
    }

    private static String tools() {
        return String.join(", ", List.of(Test.values()).stream().map(t -> t.tool).toList());
    }

    private static ErrnoException bad(String msg) {
        return new ErrnoException(Errno.EINVAL, "perftest: " + msg);
    }

    /** {@code --version}: the build's version. */
    static final class Version implements IVersionProvider {
        @Override
        public String[] getVersion() {
            Properties p = new Properties();
            try (InputStream in = PerfCli.class.getResourceAsStream("perftest.properties")) {
                if (in == null) {
                    throw new IllegalStateException("perftest.properties missing from the perftest jar");
                }
                p.load(in);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            return new String[]{"dmaplane perftest " + p.getProperty("version"), "Java " + Runtime.version()};
        }
    }

    /** A conversion error whose message says everything, option and value included. */
    static final class WholeMessage extends TypeConversionException {
        private static final long serialVersionUID = 1L;

        WholeMessage(String msg) {
            super(msg);
        }
    }

    /** A whole number in {@code int} range, decimal as perftest's {@code strtol} reads it, without a raw exception. */
    static final class IntValue implements ITypeConverter<Integer> {
        private static final Pattern DECIMAL = Pattern.compile("[+-]?[0-9]+");
        private static final BigInteger MIN = BigInteger.valueOf(Integer.MIN_VALUE);
        private static final BigInteger MAX = BigInteger.valueOf(Integer.MAX_VALUE);

        @Override
        public Integer convert(String value) {
            if (!DECIMAL.matcher(value).matches()) {
                throw new TypeConversionException("not a whole number");
            }
            BigInteger v = new BigInteger(value);
            if (v.compareTo(MIN) < 0 || v.compareTo(MAX) > 0) {
                throw new TypeConversionException("out of range (" + MIN + ".." + MAX + ")");
            }
            return v.intValue();
        }
    }

    /** {@code -c RC|UC|UD}. */
    static final class ConnectionValue implements ITypeConverter<QpType> {
        @Override
        public QpType convert(String value) {
            return switch (value) {
                case "RC" -> QpType.RC;
                case "UC" -> QpType.UC;
                case "UD" -> QpType.UD;
                default -> throw new WholeMessage("invalid connection type -c " + value + ": RC, UC or UD");
            };
        }
    }

    /** The connection types, for the usage text and completion. */
    static final class Connections implements Iterable<String> {
        @Override
        public Iterator<String> iterator() {
            return List.of("RC", "UC", "UD").iterator();
        }
    }

    /** One tool and perftest's options; unset numbers take the tool's defaults ({@link PerfConfig#defaults}). */
    @Command(mixinStandardHelpOptions = true, versionProvider = Version.class, sortOptions = false)
    static final class ToolCommand {
        final Test test;
        @Option(names = {"-s", "--size"}, paramLabel = "SIZE", converter = IntValue.class,
                description = "message size in bytes, 1..8388608 (bandwidth 65536, latency 2, atomics 8)")
        Integer size;
        @Option(names = {"-n", "--iters"}, paramLabel = "N", converter = IntValue.class,
                description = "iterations per size (bandwidth 5000, latency 1000)")
        Integer iters;
        @Option(names = {"-a", "--all"}, description = "every size 2 .. 8 MiB, powers of two")
        boolean all;
        @Option(names = {"-q", "--qp"}, paramLabel = "N", converter = IntValue.class,
                description = "queue pairs, 1..64 (bandwidth tests)")
        Integer qps;
        @Option(names = {"-D", "--duration"}, paramLabel = "SECS", converter = IntValue.class,
                description = "run each size for SECS seconds instead of a count")
        Integer duration;
        @Option(names = {"-t", "--tx-depth"}, paramLabel = "N", converter = IntValue.class,
                description = "work requests outstanding per QP, 1..4096 (bandwidth 128, latency 1)")
        Integer txDepth;
        @Option(names = {"-Q", "--cq-mod"}, paramLabel = "N", converter = IntValue.class,
                description = "signal one work request of every N (bandwidth 100; the post list size with -l)")
        Integer cqMod;
        @Option(names = {"-l", "--post_list"}, paramLabel = "N", converter = IntValue.class,
                description = "work requests per post, one doorbell each (default 1)")
        Integer postList;
        @Option(names = {"-I", "--inline_size"}, paramLabel = "BYTES", converter = IntValue.class,
                description = "post messages up to BYTES with inline data (SEND and RDMA WRITE; default 0)")
        Integer inlineSize;
        @Option(names = {"-c", "--connection"}, paramLabel = "TYPE", converter = ConnectionValue.class,
                completionCandidates = Connections.class,
                description = "the QPs' transport: ${COMPLETION-CANDIDATES} (default RC)")
        QpType connection = QpType.RC;
        @Option(names = {"-b", "--bidirectional"}, description = "both ends send at once (bandwidth tests)")
        boolean bidirectional;
        @Option(names = {"-e", "--events"}, description = "sleep on completion events instead of polling")
        boolean events;
        @Option(names = "--use_srq", description = "receives from one shared receive queue (SEND tests)")
        boolean srq;
        @Option(names = {"-N", "--noPeak"}, description = "measure no peak bandwidth (bandwidth tests)")
        boolean noPeak;
        @Option(names = {"-H", "--report-histogram"}, description = "print every sample, sorted (latency tests)")
        boolean histogram;
        @Option(names = {"-U", "--report-unsorted"}, description = "print every sample as measured (latency tests)")
        boolean unsorted;
        @Option(names = "--report_gbits", description = "bandwidth in Gb/sec instead of MB/sec")
        boolean reportGbits;
        @Option(names = {"-R", "--rdma_cm"}, description = "connect the QPs through the rdma_cm (RC; always on iWARP)")
        boolean rdmaCm;
        @Parameters(arity = "0..1", paramLabel = "HOST",
                description = "the server to run against (this process is the client); with no HOST, -p or --ip"
                        + " make this process the server, none of them runs both ends here")
        String host;
        @Option(names = {"-p", "--port"}, paramLabel = "PORT", converter = IntValue.class,
                description = "the server's TCP port for the out-of-band exchange (default 18515)")
        Integer port;
        @Option(names = {"-d", "--ib-dev"}, paramLabel = "DEV",
                description = "this end's HCA (default rxe0); alone, both ends here from DEV to the other HCA of its"
                        + " driver (rxe0/rxe1, siw0/siw1)")
        String device;
        @Option(names = "--ip", paramLabel = "A.B.C.D",
                description = "this end's RoCEv2 address (GID) between processes (default: its address on the"
                        + " connection; 127.0.0.11 for a server and 127.0.0.12 for a client on the loopback)")
        String ip;
        @Option(names = "--pcap", paramLabel = "FILE",
                description = "write every frame this process's HCAs send to FILE as it is on the wire (libpcap:"
                        + " Ethernet, IPv4, UDP 4791 or TCP, the RDMA headers); in one process both ends, between"
                        + " processes this end's")
        Path pcap;

        ToolCommand(Test test) {
            this.test = test;
        }

        /**
         * The run between processes these options ask for: the client with a host, the server with {@code -p} or
         * {@code --ip} and no host; empty for both ends in this process (on {@link #device} when given).
         *
         * @throws ErrnoException {@code EINVAL} for a port outside 1..65535 or an address that is not IPv4
         */
        Optional<Wire.Options> wire() {
            if (host == null && port == null && ip == null) {
                return Optional.empty();
            }
            int p = port != null ? port : Wire.DEFAULT_PORT;
            if (p < 1 || p > 65535) {
                throw bad("invalid port -p " + p + ": 1..65535");
            }
            InetAddress a = null;
            if (ip != null) {
                if (!IPV4.matcher(ip).matches()) {
                    throw bad("invalid address --ip " + ip + ": an IPv4 address A.B.C.D");
                }
                try {
                    a = InetAddress.getByName(ip);
                } catch (UnknownHostException e) {
                    throw new ErrnoException(Errno.EINVAL, "perftest: invalid address --ip " + ip + ": " + e.getMessage(), e);
                }
            }
            return Optional.of(new Wire.Options(host, p, device != null ? device : "rxe0", a, pcap));
        }

        private static final Pattern IPV4 = Pattern.compile("(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}");

        /** The options as a checked configuration; a bad value is {@code EINVAL} naming it. */
        PerfConfig config() {
            PerfConfig d = PerfConfig.defaults(test);
            int tx = txDepth != null ? txDepth : d.txDepth();
            int list = postList != null ? postList : 1;
            // perftest: a post list sets the CQ moderation to its size unless -Q was given
            int mod = cqMod != null ? cqMod : list > 1 ? list : Math.min(d.cqMod(), tx);
            return new PerfConfig(test, size != null ? size : d.size(), iters != null ? iters : d.iterations(), all,
                    qps != null ? qps : d.qps(), duration != null ? duration : d.duration(), reportGbits, tx, mod,
                    inlineSize != null ? inlineSize : 0, list, bidirectional, connection, events, srq, noPeak,
                    histogram, unsorted, rdmaCm);
        }
    }

    /** {@code gpudirect [ROUNDS]}: the GPUDirect RDMA figures, when the gpudirect bundle is on the class path. */
    @Command(name = "gpudirect", mixinStandardHelpOptions = true, versionProvider = Version.class,
            description = "GPUDirect RDMA figures: peer-to-peer vs bounce, moves, latency (docs/BENCHMARKS.md)")
    static final class GpuDirectCommand {
        static final String BENCH = "dev.dmaplane.gpudirect.bench.GpuDirectBench";
        @Parameters(arity = "0..1", paramLabel = "ROUNDS", converter = IntValue.class,
                description = "measured rounds, 1..1000 (default 5)")
        Integer rounds;

        void run() throws ReflectiveOperationException {
            Class<?> bench;
            try {
                bench = Class.forName(BENCH);
            } catch (ClassNotFoundException e) {
                throw new ErrnoException(Errno.ENOENT, "perftest: gpudirect needs the gpudirect bundle on the class"
                        + " path (./dmaplane perf gpudirect)");
            }
            String[] args = rounds == null ? new String[0] : new String[]{String.valueOf(rounds)};
            bench.getMethod("main", String[].class).invoke(null, (Object) args);
        }
    }
}
