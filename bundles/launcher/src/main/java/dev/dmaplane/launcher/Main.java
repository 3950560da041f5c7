package dev.dmaplane.launcher;

import picocli.CommandLine;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.ParseResult;
import picocli.CommandLine.UnmatchedArgumentException;

import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The {@code dmaplane} command: embeds Apache Felix with the dmaplane runtime. The command line is {@link Cli}'s
 * picocli model ({@code dmaplane help} prints its usage):
 *
 * <pre>
 * dmaplane run   [--topology FILE] [--work DIR] [--jfr FILE]   interactive Gogo shell; deploy/ is watched
 * dmaplane demo  [NAME | --list] [--work DIR]       the headline demo (or another), exits 0 when every check passed
 * dmaplane shell [--topology FILE] [--work DIR] CMD...   runs one Gogo command line and exits
 * dmaplane new-driver NAME [--package PKG] [--dir DIR]    writes a new accelerator's project
 * dmaplane nvme perf -q N -o BYTES -w PATTERN -t S   spdk_nvme_perf through the user-space NVMe driver
 * dmaplane completion bash                          bash completion generated from the model
 * dmaplane help [COMMAND]
 * </pre>
 *
 * The work directory defaults to the system property {@code dmaplane.work}, else {@code dmaplane-COMMAND} (run,
 * demo, shell) under the system property {@code dmaplane.workroot} or {@code target}, so that a demo or a shell
 * never touches a running {@code run}'s; it is wiped at every start, under a lock a second runtime is refused by.
 * The distribution (with {@code bundle/} and {@code drivers/}) is found next to the launcher jar, or named by
 * {@code --dist} or the system property {@code dmaplane.dist}.
 *
 * <p>Exit codes: 0 done, 1 failed, 2 a usage error (one line naming the bad word and the command's help hint, as
 * picocli's {@code exitCodeOnInvalidInput}).
 */
public final class Main {
    /** The demos, by name; the first is what {@code dmaplane demo} runs. */
    static final Map<String, String> DEMOS = demos();

    private static Map<String, String> demos() {
        Map<String, String> d = new LinkedHashMap<>();
        d.put("gpudirect", "GPUDirect RDMA: rxe1 writes 64 MiB into the GPU's VRAM through rxe0's dma-buf region, the GPU"
                + " checks and computes on it; beside the bounce path, a HCA without a peer-to-peer path, eviction under"
                + " traffic, the fallbacks (the default)");
        d.put("dmatest", "the dmatest client on the GPU's copy engine (a dmaengine channel): copies through the IOMMU,"
                + " a use-after-unmap the IOMMU stops");
        return Collections.unmodifiableMap(d);
    }

    /** A parsed command that boots the runtime. */
    record Options(String mode, Path topology, Path work, Path dist, Path jfr, boolean debug, List<String> rest) {
    }

    /** How long a command line sent to a running runtime may take. */
    static final Duration SHELL_TIMEOUT = Duration.ofSeconds(60);

    private Main() {
    }

    public static void main(String[] args) {
        boolean debug = List.of(args).contains("--debug");
        int code;
        try {
            code = run(args, System.out, System.err);
        } catch (IllegalStateException e) {
            System.err.println("dmaplane: " + e.getMessage()); // a failure we explain; the log above has details
            if (debug) {
                e.printStackTrace();
            }
            code = 1;
        } catch (Throwable t) {
            System.err.println("dmaplane: " + t + (debug ? "" : " (--debug prints its stack)"));
            if (debug) {
                t.printStackTrace();
            }
            code = 1;
        }
        System.exit(code);
    }

    /** Runs the command line; returns the exit code. */
    static int run(String[] args, PrintStream out, PrintStream err) throws Exception {
        Optional<Class<?>> perftest = Cli.perftest();
        if (args.length > 0 && args[0].equals("perf") && perftest.isPresent()) {
            return perf(perftest.get(), Arrays.copyOfRange(args, 1, args.length), out, err);
        }
        Optional<Class<?>> nvme = Cli.nvmeUser();
        if (args.length > 0 && args[0].equals("nvme") && nvme.isPresent()) {
            return perf(nvme.get(), Arrays.copyOfRange(args, 1, args.length), out, err);
        }
        CommandLine cli = Cli.commandLine(out, err);
        Options o;
        try {
            ParseResult parsed = cli.parseArgs(args);
            if (CommandLine.printHelpIfRequested(parsed)) {
                return 0;
            }
            if (!parsed.hasSubcommand()) {
                cli.usage(out); // bare 'dmaplane': what there is to do
                return 0;
            }
            ParseResult leaf = parsed.subcommand();
            Object command = leaf.commandSpec().userObject();
            if (command instanceof Cli.Action action) {
                return action.run(out, err);
            }
            o = ((Cli.RuntimeCommand) command).options();
        } catch (ParameterException e) {
            return usageError(e, err);
        }
        if (Runtime.version().feature() < 25) {
            err.println("dmaplane: needs Java 25 or newer, this is " + Runtime.version());
            return 1;
        }
        DmaplaneRuntime.Config config = new DmaplaneRuntime.Config(o.dist(), o.work()).withMachineFile(o.topology())
                .withCommand(o.mode());
        FlightRecording recording = FlightRecording.start(o.jfr(), out);
        try {
            return switch (o.mode()) {
                case "demo" -> demo(config, o.rest(), out);
                case "shell" -> {
                    Optional<Integer> answered = shellInRunningRuntime(o, out, err);
                    yield answered.isPresent() ? answered.get() : shell(config, String.join(" ", o.rest()), out, err);
                }
                case "topo" -> shell(config, topoLine(o.rest()), out, err);
                case "run" -> interactive(config, out);
                default -> throw new AssertionError(o.mode());
            };
        } catch (MachineFileCheck.BadMachineFile e) {
            err.println(e.getMessage()); // FILE:LINE:COLUMN: what is wrong, as a compiler says it
            if (o.debug()) {
                e.getCause().printStackTrace(err);
            }
            return 1;
        } finally {
            if (recording != null) {
                recording.close();
            }
        }
    }

    /**
     * A usage error: one line, the command and what is wrong with the word it names, then the command's help hint;
     * picocli's exit code for invalid input (2).
     */
    static int usageError(ParameterException e, PrintStream err) {
        CommandLine where = e.getCommandLine();
        String message = e.getMessage();
        if (e instanceof UnmatchedArgumentException u && where.getCommandSpec().parent() == null
                && !u.getUnmatched().isEmpty() && !u.getUnmatched().getFirst().startsWith("-")) {
            message = "unknown command '" + u.getUnmatched().getFirst() + "' (one of "
                    + String.join(", ", where.getSubcommands().keySet()) + ")";
        }
        err.println(where.getCommandSpec().qualifiedName() + ": " + message);
        err.println("Try '" + where.getCommandSpec().qualifiedName() + " --help' for more information.");
        return where.getCommandSpec().exitCodeOnInvalidInput();
    }

    /**
     * {@code perf ...} with perftest on the class path, or {@code nvme ...} with nvme-user: the tool's command line
     * (the same model as the usage text's) parses and runs the words after the command, with the tool's errors and
     * exit status.
     */
    private static int perf(Class<?> tool, String[] args, PrintStream out, PrintStream err) throws Exception {
        try {
            return (Integer) tool.getMethod("run", String[].class, PrintStream.class, PrintStream.class)
                    .invoke(null, args, out, err);
        } catch (InvocationTargetException e) {
            if (e.getCause() instanceof Exception cause) {
                throw cause;
            }
            throw e;
        }
    }

    /** {@code new-driver NAME [--package PKG] [--dir DIR]}: generates the project, says what to do next. */
    static int newDriver(String name, String pkg, Path dir, PrintStream out, PrintStream err) throws IOException {
        try {
            Path project = NewDriver.generate(name, pkg, dir, DmaplaneRuntime.versions().getProperty("project.version"));
            out.println("dmaplane: wrote " + project);
            out.println("  cd " + project + " && mvn verify      # build both bundles and run their tests");
            out.println("  ./dmaplane run --topology " + project.resolve(name + ".yaml")
                    + "      # then copy model/target/*.jar and driver/target/*.jar into its deploy/");
            return 0;
        } catch (IllegalArgumentException e) {
            err.println("dmaplane new-driver: " + e.getMessage());
            return 2;
        }
    }

    /**
     * Parses a command line that boots the runtime (run, demo, shell) into its checked options.
     *
     * @throws ParameterException for a usage error, naming the bad word
     */
    static Options parse(String... args) {
        CommandLine cli = Cli.commandLine(new PrintStream(OutputStream.nullOutputStream()),
                new PrintStream(OutputStream.nullOutputStream()));
        ParseResult parsed = cli.parseArgs(args);
        if (!parsed.hasSubcommand() || !(parsed.subcommand().commandSpec().userObject() instanceof Cli.RuntimeCommand c)) {
            throw new ParameterException(cli, "not a command that boots the runtime: " + List.of(args));
        }
        return c.options();
    }

    /** {@code dmaplane.dist}, else the directory above the launcher jar's {@code lib/}. */
    static Path defaultDist() {
        String prop = System.getProperty("dmaplane.dist");
        if (prop != null) {
            return Path.of(prop);
        }
        try {
            Path jar = Path.of(Main.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            return jar.getParent().getParent();
        } catch (URISyntaxException | RuntimeException e) {
            return Path.of("bundles/launcher/target/dist");
        }
    }

    /** {@code demo [NAME | --list]}: the named demo, the default one, or the list. */
    private static int demo(DmaplaneRuntime.Config config, List<String> rest, PrintStream out) throws Exception {
        String name = rest.isEmpty() ? DEMOS.keySet().iterator().next() : rest.getFirst();
        if (name.equals("--list")) {
            DEMOS.forEach((n, what) -> out.println(String.format("%-10s %s", n, what)));
            return 0;
        }
        return switch (name) {
            case "gpudirect" -> new GpuDirectDemo(config, out).run();
            case "dmatest" -> new DmaTestDemo(config, out).run();
            default -> throw new AssertionError(name);
        };
    }

    /** The Gogo line of {@code dmaplane topo}: {@code dmaplane:topo [--svg|--dot "FILE"]}, the file quoted for Gogo. */
    static String topoLine(List<String> rest) {
        return rest.isEmpty() ? "dmaplane:topo" : "dmaplane:topo " + rest.get(0) + " \"" + rest.get(1) + "\"";
    }

    /**
     * {@code shell CMD} answered by a running {@code run}: the one on {@code --work DIR}, or without it the one on the
     * default run directory, through its {@link ShellSocket}. Empty when none listens, or when {@code --topology} or
     * {@code --jfr} asks for a runtime of this process's own.
     */
    static Optional<Integer> shellInRunningRuntime(Options o, PrintStream out, PrintStream err) throws Exception {
        if (o.topology() != null || o.jfr() != null) {
            return Optional.empty();
        }
        Path defaultShell = Path.of(System.getProperty("dmaplane.workroot", "target"), "dmaplane-shell").toAbsolutePath();
        Path work = o.work().equals(defaultShell) && System.getProperty("dmaplane.work") == null
                ? defaultShell.resolveSibling("dmaplane-run") : o.work();
        String line = String.join(" ", o.rest());
        Optional<ShellSocket.Reply> reply = ShellSocket.ask(work.resolve(ShellSocket.NAME), line, SHELL_TIMEOUT);
        if (reply.isEmpty()) {
            return Optional.empty();
        }
        if (reply.get().ok()) {
            out.println(reply.get().text());
            return Optional.of(0);
        }
        err.println("dmaplane: " + line + ": " + reply.get().text());
        return Optional.of(1);
    }

    private static int shell(DmaplaneRuntime.Config config, String line, PrintStream out, PrintStream err) throws Exception {
        try (DmaplaneRuntime rt = DmaplaneRuntime.start(config, DmaplaneRuntime.DEFAULT_START_TIMEOUT)) {
            try {
                out.println(rt.gogo(line, Duration.ofSeconds(10)));
                return 0;
            } catch (Gogo.CommandException e) {
                err.println("dmaplane: " + line + ": " + e.getMessage());
                return 1;
            }
        }
    }

    private static int interactive(DmaplaneRuntime.Config config, PrintStream out) throws Exception {
        out.println("dmaplane runtime " + DmaplaneRuntime.versions().getProperty("project.version")
                + " on Apache Felix " + DmaplaneRuntime.versions().getProperty("felix.version"));
        out.println("  deploy directory: " + config.workDir().resolve("deploy")
                + "  (copy driver bundles here, e.g. " + config.distDir().resolve("drivers") + "/*.jar)");
        out.println("  'dmaplane:help' lists the dmaplane commands, 'lb' the bundles; Ctrl-D, 'exit' or 'stop 0' quits");
        DmaplaneRuntime rt = DmaplaneRuntime.start(config.withInteractive(true), DmaplaneRuntime.DEFAULT_START_TIMEOUT);
        ShellSocket socket = ShellSocket.open(config.workDir(), line -> rt.gogo(line, SHELL_TIMEOUT));
        out.println("  './dmaplane shell CMD' runs CMD here (socket " + config.workDir().resolve(ShellSocket.NAME) + ")");
        Thread hook = new Thread(() -> {
            try {
                socket.close();
                rt.stop(Duration.ofSeconds(10));
            } catch (IOException e) {
                System.err.println("dmaplane: closing " + config.workDir().resolve(ShellSocket.NAME) + ": " + e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, "dmaplane-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        rt.framework().waitForStop(0);
        socket.close();
        return 0;
    }
}
