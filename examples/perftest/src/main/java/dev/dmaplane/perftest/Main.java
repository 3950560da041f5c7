package dev.dmaplane.perftest;

import dev.dmaplane.errno.ErrnoException;
import picocli.CommandLine;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.ParseResult;

import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * {@code java dev.dmaplane.perftest.Main write_bw -s 65536 -n 1000}: boots the default machine, binds Soft-RoCE,
 * runs one tool between rxe0 and rxe1 and prints perftest's report; {@code Main bench} runs the figures of
 * docs/BENCHMARKS.md ("perftest over Soft-RoCE"). This is what {@code ./dmaplane perf} runs. The command line is one
 * picocli model ({@link #commandLine}): {@code perf --help}, {@code perf write_bw --help}.
 *
 * <p>Exit status, as perftest's: 0 after a run whose bytes checked out (or help); 1, with the error on standard
 * error and no row for the size that failed (the header and the rows before it are printed as they are made), for a bad option ({@code EINVAL}, followed by the tool's usage hint), a failed byte check
 * ({@code EIO}) or any other {@link ErrnoException}.
 */
public final class Main {
    /** The command as users type it. */
    static final String NAME = "dmaplane perf";

    private Main() {
    }

    public static void main(String[] args) {
        int status = run(args, System.out, System.err);
        if (status != 0) {
            System.exit(status);
        }
    }

    /**
     * perftest's command line named {@code name} ({@code dmaplane perf}), for a launcher's usage text and shell
     * completion.
     */
    public static CommandLine commandLine(String name) {
        return PerfCli.commandLine(name);
    }

    /** Runs the command line on a machine of its own; returns the exit status {@link #main} ends with. */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        return run(args, Perftest::run, out, err);
    }

    /** A tool run in this process: prints its report on {@code out} as it is made, returns the result. */
    @FunctionalInterface
    interface Tool {
        PerfResult run(PerfConfig cfg, PrintStream out);
    }

    /**
     * The command line without {@link System#exit}: runs {@code tool} on the parsed options (or the benchmark set
     * for {@code bench}) and returns the exit status {@link #main} ends with.
     */
    static int run(String[] args, Tool tool, PrintStream out, PrintStream err) {
        CommandLine cli = PerfCli.commandLine(NAME);
        cli.setOut(new PrintWriter(out, true, StandardCharsets.UTF_8));
        cli.setErr(new PrintWriter(err, true, StandardCharsets.UTF_8));
        try {
            ParseResult parsed = cli.parseArgs(args);
            if (CommandLine.printHelpIfRequested(parsed)) {
                return 0;
            }
            if (!parsed.hasSubcommand()) {
                throw new ParameterException(cli, "no test given");
            }
            Object command = parsed.subcommand().commandSpec().userObject();
            switch (command) {
                case PerfCli.ToolCommand t -> {
                    PerfConfig config;
                    Optional<Wire.Options> wire;
                    try {
                        config = t.config();
                        wire = t.wire();
                    } catch (ErrnoException e) {
                        err.println(e.getMessage()); // a value out of its range: a usage error too
                        err.println(PerfCli.hint(parsed.subcommand().commandSpec().commandLine()));
                        return 1;
                    }
                    if (wire.isEmpty() && (t.device != null || t.pcap != null)) {
                        Standalone.run(config, t.device != null ? t.device : "rxe0", Map.of(), out, t.pcap);
                    } else if (wire.isEmpty()) {
                        tool.run(config, out);
                    } else if (wire.get().server()) {
                        Wire.server(config, wire.get(), Standalone.STATIONS, out);
                    } else {
                        Wire.client(config, wire.get(), List.of(args), Standalone.STATIONS, out);
                    }
                }
                case Bench.BenchCommand b -> Bench.main(b.secs);
                case Bench.PartCommand p -> Bench.part(p.part, p.secs);
                case WireBench.WireBenchCommand w -> WireBench.main(w.runs, w.secs, out);
                case PerfCli.GpuDirectCommand g -> g.run();
                default -> throw new IllegalStateException("no action for " + command.getClass().getName());
            }
            return 0;
        } catch (ParameterException e) {
            err.println(PerfCli.errno(e).getMessage());
            err.println(PerfCli.hint(e.getCommandLine()));
            return 1;
        } catch (ErrnoException e) {
            err.println(e.getMessage());
            return 1;
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("perftest: gpudirect bench failed to run: " + e, e);
        }
    }
}
