package dev.dmaplane.launcher;

import java.io.IOException;
import java.io.PrintStream;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The {@code dmaplane} command: embeds Apache Felix with the dmaplane runtime.
 *
 * <pre>
 * dmaplane run   [--topology FILE] [--work DIR] [--jfr FILE]   interactive Gogo shell; deploy/ is watched
 * dmaplane demo  [NAME | --list] [--work DIR]       the headline demo (or another), exits 0 when every check passed
 * dmaplane shell [--topology FILE] [--work DIR] CMD...   runs one Gogo command line and exits
 * dmaplane help
 * </pre>
 *
 * The work directory defaults to the system property {@code dmaplane.work}, else {@code dmaplane-COMMAND} (run,
 * demo, shell) under the system property {@code dmaplane.workroot} or {@code target}, so that a demo or a shell
 * never touches a running {@code run}'s; it is wiped at every start, under a lock a second runtime is refused by.
 * The distribution (with {@code bundle/} and {@code drivers/}) is found next to the launcher jar, or named by
 * {@code --dist} or the system property {@code dmaplane.dist}.
 */
public final class Main {
    static final String USAGE = """
            usage: dmaplane <command> [options]

              run   [--topology FILE] [--work DIR]        boot the runtime with an interactive Gogo shell
                                                          (dmaplane:help lists the dmaplane commands;
                                                          Ctrl-D or 'stop 0' quits)
              demo  [NAME | --list] [--work DIR]          boot, hot-load the GPU, Soft-RoCE and the gpudirect
                                                          bundle through deploy/: GPUDirect RDMA into VRAM beside
                                                          the bounce path; unload, check nothing is left.
                                                          --list names the other demos
              shell [--topology FILE] [--work DIR] CMD... boot, run one Gogo command line, exit
              new-driver NAME [--package PKG] [--dir DIR] write a new accelerator's project (model and driver
                                                          bundles, machine file, tests) into DIR/NAME
              help                                        this text

            options:
              --topology FILE  machine file to boot (framework property dmaplane.machine); default machine otherwise
              --work DIR       work directory (framework storage, deploy/), wiped at start, locked while in
                               use; default target/dmaplane-run, -demo or -shell after the command
              --dist DIR       distribution directory holding bundle/ and drivers/ (found next to the jar)
              --jfr FILE       record the command with the JDK Flight Recorder (JVM events and dmaplane's
                               dev.dmaplane.Trace events) into FILE, for jfr print and JDK Mission Control
              --debug          with an error in the machine file, print the stack of the loader's exception too
            Driver bundles copied into WORK/deploy/ are installed, started and bound within a second;
            deleting them unbinds the driver (its remove runs) and uninstalls them.""";

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

    /** Parsed command line. */
    record Options(String mode, Path topology, Path work, Path dist, Path jfr, boolean debug, List<String> rest) {
    }

    private Main() {
    }

    public static void main(String[] args) {
        int code;
        try {
            code = run(args, System.out, System.err);
        } catch (IllegalStateException e) {
            System.err.println("dmaplane: " + e.getMessage()); // a failure we explain; the log above has details
            code = 1;
        } catch (Throwable t) {
            System.err.println("dmaplane: " + t);
            t.printStackTrace();
            code = 1;
        }
        System.exit(code);
    }

    /** Runs the command line; returns the exit code. */
    static int run(String[] args, PrintStream out, PrintStream err) throws Exception {
        if (args.length > 0 && args[0].equals("new-driver")) {
            return newDriver(args, out, err);
        }
        Options o;
        try {
            o = parse(args);
        } catch (IllegalArgumentException e) {
            err.println("dmaplane: " + e.getMessage());
            err.println(USAGE);
            return 2;
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
                case "help" -> {
                    out.println(USAGE);
                    yield 0;
                }
                case "demo" -> demo(config, o.rest(), out);
                case "shell" -> shell(config, String.join(" ", o.rest()), out, err);
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

    /** {@code new-driver NAME [--package PKG] [--dir DIR]}: generates the project, says what to do next. */
    static int newDriver(String[] args, PrintStream out, PrintStream err) throws IOException {
        String name = null;
        String pkg = null;
        Path dir = Path.of(".");
        try {
            for (int i = 1; i < args.length; i++) {
                switch (args[i]) {
                    case "--package" -> pkg = value(args, ++i, "--package");
                    case "--dir" -> dir = Path.of(value(args, ++i, "--dir"));
                    default -> {
                        if (args[i].startsWith("--") || name != null) {
                            throw new IllegalArgumentException("unknown argument '" + args[i] + "' for new-driver");
                        }
                        name = args[i];
                    }
                }
            }
            if (name == null) {
                throw new IllegalArgumentException("new-driver needs a NAME, e.g. dmaplane new-driver acme");
            }
            Path project = NewDriver.generate(name, pkg, dir, DmaplaneRuntime.versions().getProperty("project.version"));
            out.println("dmaplane: wrote " + project);
            out.println("  cd " + project + " && mvn verify      # build both bundles and run their tests");
            out.println("  ./dmaplane run --topology " + project.resolve(name + ".yaml")
                    + "      # then copy model/target/*.jar and driver/target/*.jar into its deploy/");
            return 0;
        } catch (IllegalArgumentException e) {
            err.println("dmaplane: " + e.getMessage());
            return 2;
        }
    }

    static Options parse(String[] args) {
        if (args.length == 0) {
            return new Options("help", null, null, null, null, false, List.of());
        }
        String mode = args[0];
        if (mode.equals("--help") || mode.equals("-h")) {
            mode = "help";
        }
        if (!List.of("run", "demo", "shell", "help").contains(mode)) {
            throw new IllegalArgumentException("unknown command '" + mode + "'");
        }
        Path topology = null;
        Path work = null;
        Path dist = null;
        Path jfr = null;
        boolean debug = false;
        List<String> rest = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            String a = args[i];
            if (!rest.isEmpty() && mode.equals("shell")) {
                rest.add(a); // everything after the command's first word belongs to it
                continue;
            }
            switch (a) {
                case "--topology" -> topology = Path.of(value(args, ++i, a));
                case "--work" -> work = Path.of(value(args, ++i, a));
                case "--dist" -> dist = Path.of(value(args, ++i, a));
                case "--jfr" -> jfr = Path.of(value(args, ++i, a));
                case "--debug" -> debug = true;
                case "--list" -> {
                    if (!mode.equals("demo")) {
                        throw new IllegalArgumentException("unknown option '" + a + "' for " + mode);
                    }
                    rest.add(a);
                }
                default -> {
                    if (mode.equals("demo") && !a.startsWith("--") && rest.isEmpty()) {
                        if (!DEMOS.containsKey(a)) {
                            throw new IllegalArgumentException("no demo named '" + a + "'; dmaplane demo --list names them");
                        }
                        rest.add(a);
                        continue;
                    }
                    if (a.startsWith("--") || !mode.equals("shell")) {
                        throw new IllegalArgumentException("unknown option '" + a + "' for " + mode);
                    }
                    rest.add(a);
                }
            }
        }
        if (mode.equals("shell") && rest.isEmpty()) {
            throw new IllegalArgumentException("shell needs a Gogo command line, e.g. dmaplane shell dmaplane:devices");
        }
        if (topology != null && mode.equals("demo")) {
            throw new IllegalArgumentException("demo runs on the default machine; --topology is for run and shell");
        }
        if (topology != null && !Files.isRegularFile(topology)) {
            throw new IllegalArgumentException("machine file " + topology + " does not exist");
        }
        if (work == null) {
            String explicit = System.getProperty("dmaplane.work");
            work = explicit != null ? Path.of(explicit)
                    : Path.of(System.getProperty("dmaplane.workroot", "target"), "dmaplane-" + mode);
        }
        if (dist == null) {
            dist = defaultDist();
        }
        if (jfr != null && (jfr.toAbsolutePath().getParent() == null || !Files.isDirectory(jfr.toAbsolutePath().getParent()))) {
            throw new IllegalArgumentException("--jfr " + jfr + ": its directory does not exist");
        }
        return new Options(mode, topology, work.toAbsolutePath(), dist.toAbsolutePath(),
                jfr == null ? null : jfr.toAbsolutePath(), debug, List.copyOf(rest));
    }

    private static String value(String[] args, int i, String option) {
        if (i >= args.length || args[i].startsWith("--")) {
            throw new IllegalArgumentException(option + " needs a value");
        }
        return args[i];
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
        out.println("  'dmaplane:help' lists the dmaplane commands, 'lb' the bundles; Ctrl-D or 'stop 0' quits");
        DmaplaneRuntime rt = DmaplaneRuntime.start(config.withInteractive(true), DmaplaneRuntime.DEFAULT_START_TIMEOUT);
        Thread hook = new Thread(() -> {
            try {
                rt.stop(Duration.ofSeconds(10));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, "dmaplane-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        rt.framework().waitForStop(0);
        return 0;
    }
}
