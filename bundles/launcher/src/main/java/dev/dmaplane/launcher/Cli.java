package dev.dmaplane.launcher;

import picocli.AutoComplete;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.HelpCommand;
import picocli.CommandLine.IVersionProvider;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Unmatched;

import java.io.PrintStream;
import java.io.PrintWriter;
import java.lang.reflect.InvocationTargetException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Optional;

/**
 * The {@code dmaplane} command line as one picocli model: a {@code @Command} per subcommand, its usage text the only
 * one there is ({@code dmaplane help}, {@code dmaplane CMD --help}), its bash completion generated from it
 * ({@code dmaplane completion bash}). The commands the {@code dmaplane} script runs itself (build, fuzz,
 * reliability) are in the model for their usage and completion; {@code perf} is perftest's own model when perftest
 * is on the class path.
 */
final class Cli {
    /** The command's name, as the script is called. */
    static final String NAME = "dmaplane";
    /**
     * perftest's entry point ({@code commandLine(String)}, {@code run(String[], PrintStream, PrintStream)}), on the
     * class path of {@code ./dmaplane perf}, {@code help} and {@code completion}.
     */
    static final String PERF_CLI = "dev.dmaplane.perftest.Main";
    /**
     * nvme-user's entry point ({@code commandLine(String)}, {@code run(String[], PrintStream, PrintStream)}), on the
     * class path of {@code ./dmaplane nvme}, {@code help} and {@code completion}.
     */
    static final String NVME_CLI = "dev.dmaplane.nvmeuser.Main";
    /** Columns of the usage text. */
    static final int USAGE_WIDTH = 110;

    private Cli() {
    }

    /** What a parsed subcommand does, given the launcher's output streams; returns the exit code. */
    interface Action {
        int run(PrintStream out, PrintStream err) throws Exception;
    }

    /**
     * The root command line, printing to {@code out} and {@code err}; perftest's {@code perf} model is in it when
     * its class is on the class path.
     */
    static CommandLine commandLine(PrintStream out, PrintStream err) {
        CommandLine cli = new CommandLine(new Top());
        cli.getSubcommands().get("shell").setStopAtPositional(true); // the Gogo command line is the command's own
        cli.addSubcommand("perf", perf());
        cli.addSubcommand("nvme", nvme());
        for (Object command : List.of(new Build(), new Fuzz(), new Reliability(), new Completion(), new HelpCommand())) {
            cli.addSubcommand(command);
        }
        cli.setUsageHelpWidth(USAGE_WIDTH);
        cli.setOut(new PrintWriter(out, true, StandardCharsets.UTF_8));
        cli.setErr(new PrintWriter(err, true, StandardCharsets.UTF_8));
        return cli;
    }

    /** perftest's {@code CommandLine}, or {@link PerfStub} when perftest is not on the class path. */
    private static CommandLine perf() {
        Optional<Class<?>> perftest = perftest();
        if (perftest.isEmpty()) {
            return new CommandLine(new PerfStub()); // the launcher jar alone: run, demo, shell
        }
        try {
            return (CommandLine) perftest.get().getMethod("commandLine", String.class).invoke(null, "perf");
        } catch (InvocationTargetException e) {
            throw new IllegalStateException("perftest's command model failed: " + e.getCause(), e.getCause());
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException(PERF_CLI + " has no commandLine(String): " + e, e);
        }
    }

    /** perftest's entry point, when perftest is on the class path. */
    static Optional<Class<?>> perftest() {
        return tool(PERF_CLI);
    }

    /** nvme-user's entry point, when nvme-user is on the class path. */
    static Optional<Class<?>> nvmeUser() {
        return tool(NVME_CLI);
    }

    private static Optional<Class<?>> tool(String className) {
        try {
            return Optional.of(Class.forName(className));
        } catch (ClassNotFoundException e) {
            return Optional.empty(); // the launcher jar alone
        }
    }

    /** nvme-user's {@code CommandLine}, or {@link NvmeStub} when nvme-user is not on the class path. */
    private static CommandLine nvme() {
        Optional<Class<?>> nvme = nvmeUser();
        if (nvme.isEmpty()) {
            return new CommandLine(new NvmeStub());
        }
        try {
            return (CommandLine) nvme.get().getMethod("commandLine", String.class).invoke(null, "nvme");
        } catch (InvocationTargetException e) {
            throw new IllegalStateException("nvme-user's command model failed: " + e.getCause(), e.getCause());
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException(NVME_CLI + " has no commandLine(String): " + e, e);
        }
    }

    /** {@code --version}: the build's version, the framework's and the JVM's. */
    static final class Version implements IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[]{NAME + " " + DmaplaneRuntime.versions().getProperty("project.version"),
                    "Apache Felix " + DmaplaneRuntime.versions().getProperty("felix.version"),
                    "Java " + Runtime.version()};
        }
    }

    @Command(name = NAME, mixinStandardHelpOptions = true, versionProvider = Version.class,
            synopsisSubcommandLabel = "COMMAND",
            description = "Linux memory, PCI, IOMMU, the DMA API, dma-buf and the RDMA stack, modelled in an OSGi"
                    + " (Apache Felix) runtime.",
            subcommands = {Run.class, Demo.class, Shell.class, Topo.class, NewDriverCommand.class},
            footer = {"",
                    "run, demo and shell take --jfr FILE: a JDK Flight Recorder recording of the command (JVM events and"
                            + " dmaplane's dev.dmaplane.Trace events) written to FILE, for 'jfr print' and JDK Mission"
                            + " Control.",
                    "A bad machine file (--topology) is one line, FILE:LINE:COLUMN: what is wrong, and exit 1; --debug"
                            + " adds the stack.",
                    "The work directory (framework storage and deploy/) defaults to target/dmaplane-run"
                            + " (dmaplane-demo, dmaplane-shell for the other commands), is wiped at every start and"
                            + " locked while in use: a second dmaplane on the same one is refused.",
                    "Driver bundles copied into WORK/deploy/ (e.g. bundles/launcher/target/dist/drivers/*.jar) are"
                            + " installed, started and bound within a second; deleting them unbinds the driver (its"
                            + " remove runs) and uninstalls them.",
                    "Usage errors exit with 2, failures with 1. A JDK 25 is found by the script: JAVA_HOME if it is 25"
                            + " or newer, else /usr/lib/jvm, else java on the PATH."})
    static final class Top {
    }

    /** Options of the commands that boot the runtime. */
    static final class RuntimeOptions {
        @Option(names = "--work", paramLabel = "DIR", description = "work directory (framework storage, deploy/),"
                + " wiped at start, locked while in use; default target/dmaplane-run, -demo or -shell after the command")
        Path work;
        @Option(names = "--dist", paramLabel = "DIR", description = "distribution directory holding bundle/ and"
                + " drivers/ (found next to the launcher jar)")
        Path dist;
        @Option(names = "--jfr", paramLabel = "FILE", description = "record the command with the JDK Flight Recorder"
                + " into FILE")
        Path jfr;
        @Option(names = "--debug", description = "print the stack of an error's exception too")
        boolean debug;

        /**
         * The options as {@link Main.Options}, checked; a bad one is a {@link ParameterException}.
         *
         * @param topology the command's {@code --topology}, or null for a command without one
         */
        Main.Options options(CommandSpec spec, TopologyOption topology, List<String> rest) {
            Path machine = topology == null ? null : topology.file;
            if (machine != null && !Files.isRegularFile(machine)) {
                throw new ParameterException(spec.commandLine(), "machine file " + machine + " does not exist");
            }
            Path jfrFile = jfr == null ? null : jfr.toAbsolutePath();
            if (jfrFile != null && (jfrFile.getParent() == null || !Files.isDirectory(jfrFile.getParent()))) {
                throw new ParameterException(spec.commandLine(), "--jfr " + jfr + ": its directory does not exist");
            }
            String mode = spec.name();
            Path w = work;
            if (w == null) {
                String explicit = System.getProperty("dmaplane.work");
                w = explicit != null ? Path.of(explicit)
                        : Path.of(System.getProperty("dmaplane.workroot", "target"), "dmaplane-" + mode);
            }
            Path d = dist != null ? dist : Main.defaultDist();
            return new Main.Options(mode, machine, w.toAbsolutePath(), d.toAbsolutePath(), jfrFile, debug,
                    List.copyOf(rest));
        }
    }

    /**
     * {@code --topology}, the one definition {@code run}, {@code shell} and {@code topo} share: each boots the
     * machine the file describes before it does its part.
     */
    static final class TopologyOption {
        @Option(names = "--topology", paramLabel = "FILE", description = "machine file to boot (the default machine"
                + " otherwise)")
        Path file;
    }

    /** A command that boots the runtime: its checked {@link Main.Options}. */
    interface RuntimeCommand {
        Main.Options options();
    }

    @Command(name = "run", mixinStandardHelpOptions = true, versionProvider = Version.class,
            description = {"Boot the runtime with an interactive Gogo shell; deploy/ is watched.",
                    "'dmaplane:help' lists the commands of every loaded bundle; Ctrl-D, 'exit' or 'stop 0' quits."})
    static final class Run implements RuntimeCommand {
        @Spec
        CommandSpec spec;
        @Mixin
        TopologyOption topology;
        @Mixin
        RuntimeOptions runtime;

        @Override
        public Main.Options options() {
            return runtime.options(spec, topology, List.of());
        }
    }

    @Command(name = "demo", mixinStandardHelpOptions = true, versionProvider = Version.class,
            description = {"Boot, hot-load the GPU, Soft-RoCE and the gpudirect bundle through deploy/: GPUDirect RDMA"
                    + " into VRAM beside the bounce path, a HCA without peer-to-peer, eviction under traffic, the"
                    + " fallbacks; unload, check that nothing is left; exit 0 on success.",
                    "The demos run on the default machine."})
    static final class Demo implements RuntimeCommand {
        @Spec
        CommandSpec spec;
        @Parameters(arity = "0..1", paramLabel = "NAME", completionCandidates = DemoNames.class,
                description = "the demo to run: ${COMPLETION-CANDIDATES} (default: the first)")
        String name;
        @Option(names = "--list", description = "name the demos and what each shows")
        boolean list;
        @Mixin
        RuntimeOptions runtime;

        @Override
        public Main.Options options() {
            if (name != null && !Main.DEMOS.containsKey(name)) {
                throw new ParameterException(spec.commandLine(), "no demo named '" + name + "'; dmaplane demo --list"
                        + " names them");
            }
            List<String> rest = new ArrayList<>();
            if (list) {
                rest.add("--list");
            } else if (name != null) {
                rest.add(name);
            }
            return runtime.options(spec, null, rest);
        }
    }

    /** The demos' names, for the usage text and completion. */
    static final class DemoNames implements Iterable<String> {
        @Override
        public Iterator<String> iterator() {
            return Main.DEMOS.keySet().iterator();
        }
    }

    @Command(name = "shell", mixinStandardHelpOptions = true, versionProvider = Version.class,
            description = "Boot, run one Gogo command line (e.g. dmaplane:devices), print what it printed, exit.")
    static final class Shell implements RuntimeCommand {
        @Spec
        CommandSpec spec;
        @Mixin
        TopologyOption topology;
        @Mixin
        RuntimeOptions runtime;
        @Parameters(arity = "1..*", paramLabel = "CMD", description = "the Gogo command line; every word after its"
                + " first is its own")
        List<String> line;

        @Override
        public Main.Options options() {
            return runtime.options(spec, topology, line);
        }
    }

    @Command(name = "topo", mixinStandardHelpOptions = true, versionProvider = Version.class,
            description = {"Boot, draw the machine and exit: the PCI tree, IOMMU groups as boxes, ACS on ports, bound"
                    + " drivers, the peer-to-peer paths between functions and the dma-bufs (dmaplane:topo).",
                    "Graphviz DOT on standard output or into a file, or SVG through the installed 'dot' (Debian's"
                            + " graphviz package)."})
    static final class Topo implements RuntimeCommand {
        @Spec
        CommandSpec spec;
        @Mixin
        TopologyOption topology;
        @Option(names = "--svg", paramLabel = "FILE", description = "write SVG, rendered by Graphviz's dot, into FILE")
        Path svg;
        @Option(names = "--dot", paramLabel = "FILE", description = "write the DOT text into FILE")
        Path dot;
        @Mixin
        RuntimeOptions runtime;

        @Override
        public Main.Options options() {
            if (svg != null && dot != null) {
                throw new ParameterException(spec.commandLine(), "--svg and --dot exclude each other");
            }
            List<String> rest = new ArrayList<>();
            Path file = svg != null ? svg : dot;
            if (file != null) {
                Path out = file.toAbsolutePath();
                if (out.getParent() == null || !Files.isDirectory(out.getParent())) {
                    throw new ParameterException(spec.commandLine(), (svg != null ? "--svg " : "--dot ") + file
                            + ": its directory does not exist");
                }
                rest.add(svg != null ? "--svg" : "--dot");
                rest.add(out.toString());
            }
            return runtime.options(spec, topology, rest);
        }
    }

    @Command(name = "new-driver", mixinStandardHelpOptions = true, versionProvider = Version.class,
            description = "Write a Maven project for a new accelerator NAME into DIR/NAME: a device-model bundle and a"
                    + " driver bundle (doorbell, command ring, one MSI-X vector, DMA through the IOMMU), a machine file"
                    + " placing it, passing tests (docs/WRITING-A-DRIVER.md).")
    static final class NewDriverCommand implements Action {
        @Parameters(paramLabel = "NAME", description = "2 to 16 of a-z and 0-9, starting with a letter")
        String name;
        @Option(names = "--package", paramLabel = "PKG", description = "the Java package (default"
                + " dev.dmaplane.driver.NAME)")
        String pkg;
        @Option(names = "--dir", paramLabel = "DIR", description = "where the project goes (default: the current"
                + " directory)")
        Path dir = Path.of(".");

        @Override
        public int run(PrintStream out, PrintStream err) throws Exception {
            return Main.newDriver(name, pkg, dir, out, err);
        }
    }

    /** A command the {@code dmaplane} script runs itself; the launcher only describes it. */
    abstract static class ScriptCommand implements Action {
        @Spec
        CommandSpec spec;

        @Override
        public int run(PrintStream out, PrintStream err) {
            err.println(NAME + ": '" + spec.name() + "' is run by the dmaplane script: ./dmaplane " + spec.name());
            return 2;
        }
    }

    @Command(name = "build", mixinStandardHelpOptions = true, versionProvider = Version.class,
            description = "Rebuild the distribution (mvn -B -q -DskipTests install).")
    static final class Build extends ScriptCommand {
    }

    @Command(name = "fuzz", mixinStandardHelpOptions = true, versionProvider = Version.class,
            description = "Fuzz each Jazzer target (default: all) for RUNS inputs (default 10000) or TIME (30s, 10m,"
                    + " 2h); prints the inputs each ran, how they ended and the slowest answer; findings are moved to"
                    + " target/fuzz-findings/TARGET/; exit 1 if any (docs/RELIABILITY.md).")
    static final class Fuzz extends ScriptCommand {
        @Parameters(paramLabel = "RUNS|TIME|TARGET", arity = "0..*", completionCandidates = FuzzTargets.class,
                description = "a budget, then targets: ${COMPLETION-CANDIDATES}")
        List<String> words;
    }

    /** The fuzz targets of the script's FUZZ_TARGETS, for completion. */
    static final class FuzzTargets implements Iterable<String> {
        @Override
        public Iterator<String> iterator() {
            return List.of("machine-file-mutated", "machine-file-text", "dmaplane-commands", "rdma-commands",
                    "rxe-commands", "perf-command").iterator();
        }
    }

    @Command(name = "reliability", mixinStandardHelpOptions = true, versionProvider = Version.class,
            description = "The adversarial tests at their long-run sizes (150,000 attack requests, 100 unplug cycles,"
                    + " 50,000 storm steps, 2 x 100,000 random verbs steps); prints each test's figures; exit 1 on a"
                    + " failure (docs/RELIABILITY.md).")
    static final class Reliability extends ScriptCommand {
        @Option(names = "--short", description = "the sizes mvn verify runs")
        boolean shortRun;
        @Option(names = "--seed", paramLabel = "N", description = "the random seed")
        long seed;
    }

    @Command(name = "completion", mixinStandardHelpOptions = true, versionProvider = Version.class,
            description = {"Print a bash completion script for dmaplane, generated from this command line.",
                    "e.g. source <(./dmaplane completion bash)"})
    static final class Completion implements Action {
        @Spec
        CommandSpec spec;
        @Parameters(arity = "0..1", paramLabel = "SHELL", completionCandidates = Shells.class,
                description = "the shell: ${COMPLETION-CANDIDATES}")
        String shell = "bash";

        @Override
        public int run(PrintStream out, PrintStream err) {
            if (!shell.equals("bash")) {
                throw new ParameterException(spec.commandLine(), "no completion for shell '" + shell + "' (bash)");
            }
            out.print(AutoComplete.bash(NAME, spec.root().commandLine()));
            return 0;
        }
    }

    /** The shells {@link Completion} writes for. */
    static final class Shells implements Iterable<String> {
        @Override
        public Iterator<String> iterator() {
            return List.of("bash").iterator();
        }
    }

    /** {@code perf} when perftest is not on the class path: described, run by the script. */
    @Command(name = "perf", mixinStandardHelpOptions = true, versionProvider = Version.class,
            description = "perftest's tools (write_bw, read_bw, send_bw, atomic_bw, write_lat, read_lat, send_lat,"
                    + " atomic_lat), 'bench' and 'gpudirect' between rxe0 and rxe1 of a machine of their own; run by"
                    + " the dmaplane script ('./dmaplane perf --help' lists their options).")
    static final class PerfStub extends ScriptCommand {
        @Unmatched
        List<String> args;
    }

    /** {@code nvme} when nvme-user is not on the class path: described, run by the script. */
    @Command(name = "nvme", mixinStandardHelpOptions = true, versionProvider = Version.class,
            description = "The user-space NVMe driver (examples/nvme-user): 'nvme perf', spdk_nvme_perf on the default"
                    + " machine's NVMe through VFIO; 'nvme gds', NVMe reads into GPU VRAM, bounced or direct; 'nvme cmb',"
                    + " the NVMe's controller memory buffer as an RDMA target; run by the dmaplane script"
                    + " ('./dmaplane nvme perf --help' lists its options).")
    static final class NvmeStub extends ScriptCommand {
        @Unmatched
        List<String> args;
    }
}
