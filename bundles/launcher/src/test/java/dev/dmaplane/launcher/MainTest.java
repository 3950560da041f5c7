package dev.dmaplane.launcher;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.ParameterException;

import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Command-line parsing, without a framework: picocli's conventions (picocli user manual, "Mixin Standard Help
 * Options", "Option-Parameter Separators", "Short (POSIX) Options", "Exit Code"), one usage text from the model.
 */
class MainTest {
    private record Run(int code, String out, String err) {
    }

    private static Run main(String... args) throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    @Test
    void noArgumentsHelpAndDashHPrintTheOneUsageText() throws Exception {
        Run bare = main();
        assertEquals(0, bare.code());
        assertTrue(bare.out().startsWith("Usage: dmaplane [-hV] COMMAND"), bare.out());
        for (String command : List.of("run", "demo", "shell", "topo", "new-driver", "perf", "nvme", "build", "fuzz",
                "reliability", "completion", "help")) {
            assertTrue(bare.out().contains("\n  " + command + " "), command + " listed: " + bare.out());
        }
        assertEquals(bare, main("--help"));
        assertEquals(bare, main("-h"));
        assertEquals(bare, main("help"));
    }

    /** {@code topo}: the file options become dmaplane:topo's, absolute and quoted for Gogo; bad ones say why. */
    @Test
    void topoTakesOneOutputFileInADirectoryThatExists(@TempDir Path dir) throws Exception {
        Path svg = dir.resolve("machine picture.svg");
        Main.Options o = Main.parse("topo", "--svg", svg.toString());
        assertEquals("topo", o.mode());
        assertEquals(List.of("--svg", svg.toAbsolutePath().toString()), o.rest());
        assertEquals("dmaplane:topo --svg \"" + svg.toAbsolutePath() + "\"", Main.topoLine(o.rest()));
        assertEquals("dmaplane:topo", Main.topoLine(Main.parse("topo").rest()));
        assertTrue(Main.parse("topo").work().endsWith(Path.of("target", "dmaplane-topo")));
        Run both = main("topo", "--svg", svg.toString(), "--dot", dir.resolve("m.dot").toString());
        assertEquals(2, both.code());
        assertTrue(both.err().contains("--svg and --dot exclude each other"), both.err());
        Run nowhere = main("topo", "--dot", dir.resolve("no/such/dir/m.dot").toString());
        assertEquals(2, nowhere.code());
        assertTrue(nowhere.err().contains("its directory does not exist"), nowhere.err());
    }

    @Test
    void everyCommandHasHelpAndVersion() throws Exception {
        for (String command : List.of("run", "demo", "shell", "topo", "new-driver", "completion")) {
            Run help = main(command, "--help");
            assertEquals(0, help.code(), help.err());
            assertTrue(help.out().startsWith("Usage: dmaplane " + command + " "), help.out());
            assertTrue(help.out().contains("-V, --version"), help.out());
            assertEquals(help, main("help", command));
            Run version = main(command, "-V");
            assertEquals(0, version.code());
            assertTrue(version.out().startsWith("dmaplane " + DmaplaneRuntime.versions().getProperty("project.version")
                    + "\nApache Felix "), version.out());
        }
        Run run = main("run", "-h");
        assertTrue(run.out().contains("--topology=FILE") && run.out().contains("--work=DIR")
                && run.out().contains("--jfr=FILE") && run.out().contains("--debug"), run.out());
    }

    /**
     * {@code --topology} is one option mixed into the three commands that boot a machine file (picocli user manual,
     * "Mixins"): each one's help shows it with the same text, and demo, which runs on the default machine, has none.
     */
    @Test
    void topologyIsOneOptionSharedByRunShellAndTopo(@TempDir Path dir) throws Exception {
        CommandLine cli = Cli.commandLine(System.out, System.err);
        for (String command : List.of("run", "shell", "topo")) {
            Run help = main(command, "--help");
            assertTrue(help.out().lines().anyMatch(l -> l.matches(
                    " +--topology=FILE +machine file to boot \\(the default machine otherwise\\)")), help.out());
            Object mixin = cli.getSubcommands().get(command).getCommandSpec().mixins().get("topology").userObject();
            assertTrue(mixin instanceof Cli.TopologyOption, command + ": " + mixin);
        }
        assertFalse(main("demo", "--help").out().contains("--topology"));
        Path machine = Files.writeString(dir.resolve("m.yaml"), "machine: {}\n");
        for (String[] args : List.of(new String[]{"run", "--topology", machine.toString()},
                new String[]{"shell", "--topology=" + machine, "lb"}, new String[]{"topo", "--topology", machine.toString()})) {
            assertEquals(machine, Main.parse(args).topology(), String.join(" ", args));
        }
    }

    @Test
    void optionsTakeTheirValueAfterASpaceOrAnEqualsSign() {
        Main.Options o = Main.parse("shell", "--work", "/tmp/w", "--dist=/tmp/d", "dmaplane:trace", "5", "--x");
        assertEquals(Path.of("/tmp/w"), o.work());
        assertEquals(Path.of("/tmp/d"), o.dist());
        assertEquals(List.of("dmaplane:trace", "5", "--x"), o.rest(), "after the command everything is its own");
        assertEquals(Path.of("/tmp/w2"), Main.parse("run", "--work=/tmp/w2").work());
    }

    /** Each command has its own default work directory, so a demo or a shell never wipes a running run's. */
    @Test
    void defaultWorkDirectoryIsUnderTargetOnePerCommand() {
        if (System.getProperty("dmaplane.work") != null) {
            return; // an explicit work directory overrides the defaults; nothing to check
        }
        assertTrue(Main.parse("demo", "--dist", "/tmp/d").work().endsWith(Path.of("target", "dmaplane-demo")));
        assertTrue(Main.parse("run", "--dist", "/tmp/d").work().endsWith(Path.of("target", "dmaplane-run")));
        assertTrue(Main.parse("shell", "--dist", "/tmp/d", "lb").work().endsWith(Path.of("target", "dmaplane-shell")));
    }

    @Test
    void mistakesAreRefused() {
        assertThrows(ParameterException.class, () -> Main.parse("fly"));
        assertThrows(ParameterException.class, () -> Main.parse("run", "--bogus"));
        assertThrows(ParameterException.class, () -> Main.parse("run", "--work"));
        assertThrows(ParameterException.class, () -> Main.parse("shell"));
        assertThrows(ParameterException.class, () -> Main.parse("run", "--topology", "/nonexistent.yaml"));
        assertThrows(ParameterException.class, () -> Main.parse("demo", "--topology", "pom.xml"));
        assertThrows(ParameterException.class, () -> Main.parse("demo", "nope"));
    }

    /** A usage error is one line naming the word and the command, the command's help hint, exit 2, no stack. */
    @Test
    void usageErrorsAreOneLineWithTheCommandsHintAndExitTwo() throws Exception {
        Run unknown = main("run", "--bogus");
        assertEquals(2, unknown.code());
        assertEquals("dmaplane run: Unknown option: '--bogus'\nTry 'dmaplane run --help' for more information.\n",
                unknown.err().replace(System.lineSeparator(), "\n"));
        assertEquals("", unknown.out());

        Run fly = main("fly");
        assertEquals(2, fly.code());
        assertTrue(fly.err().startsWith("dmaplane: unknown command 'fly' (one of run, demo, shell, topo, new-driver,"),
                fly.err());
        assertTrue(fly.err().contains("\nTry 'dmaplane --help' for more information."), fly.err());

        Run missing = main("shell", "--work");
        assertEquals(2, missing.code());
        assertTrue(missing.err().startsWith("dmaplane shell: Missing required parameter for option '--work' (DIR)"),
                missing.err());

        Run demo = main("demo", "nope");
        assertEquals(2, demo.code());
        assertTrue(demo.err().startsWith("dmaplane demo: no demo named 'nope'; dmaplane demo --list names them\n"),
                demo.err());
        for (Run r : List.of(unknown, fly, missing, demo)) {
            assertFalse(r.err().contains("\tat "), "no stack trace: " + r.err());
            assertEquals(2, r.err().lines().count(), r.err());
        }
    }

    @Test
    void commandsTheScriptRunsAreDescribedHere() throws Exception {
        Run fuzz = main("fuzz", "--help");
        assertEquals(0, fuzz.code());
        assertTrue(fuzz.out().contains("machine-file-mutated"), fuzz.out());
        Run run = main("fuzz", "100");
        assertEquals(2, run.code());
        assertEquals("dmaplane: 'fuzz' is run by the dmaplane script: ./dmaplane fuzz\n",
                run.err().replace(System.lineSeparator(), "\n"));
    }
    /**
     * {@code completion bash} is picocli's {@code AutoComplete} script of the whole model: it names every command and
     * every option, and bash, sourcing it, completes {@code dmaplane run --to} to {@code --topology}.
     */
    @Test
    void bashCompletionNamesEveryCommandAndOptionAndCompletes(@TempDir Path tmp) throws Exception {
        Run r = main("completion", "bash");
        assertEquals(0, r.code(), r.err());
        CommandLine cli = Cli.commandLine(new PrintStream(OutputStream.nullOutputStream()),
                new PrintStream(OutputStream.nullOutputStream()));
        List<String> words = new ArrayList<>();
        collect(cli, words);
        assertTrue(words.containsAll(List.of("run", "demo", "shell", "perf", "new-driver", "--topology", "--work",
                "--jfr", "--list", "--package")), words.toString());
        for (String w : words) {
            assertTrue(r.out().contains(w), w + " is in the script");
        }
        assertEquals(main("completion"), r, "bash is the default");
        Run zsh = main("completion", "zsh");
        assertEquals(2, zsh.code());
        assertTrue(zsh.err().startsWith("dmaplane completion: no completion for shell 'zsh' (bash)\n"), zsh.err());

        Path script = Files.writeString(tmp.resolve("dmaplane-completion.bash"), r.out());
        assertEquals("--topology", complete(script, "dmaplane run --to"));
        assertEquals("dmatest", complete(script, "dmaplane demo dm"));
        assertEquals("new-driver", complete(script, "dmaplane new"));
    }

    /**
     * With perftest on the class path (this test's, and {@code ./dmaplane perf}'s), {@code perf} is perftest's own
     * command line: its usage, its errors and exit status (perftest's 1), and its options in the completion.
     */
    @Test
    void perfIsPerftestsOwnCommandLine(@TempDir Path tmp) throws Exception {
        Run help = main("perf", "write_bw", "--help");
        assertEquals(0, help.code(), help.err());
        assertTrue(help.out().startsWith("Usage: dmaplane perf write_bw ") && help.out().contains("-s, --size=SIZE"),
                help.out());
        assertEquals(main("help", "perf").out(), main("perf", "--help").out());

        Run bad = main("perf", "write_bw", "-s", "0");
        assertEquals(1, bad.code());
        assertEquals("EINVAL: perftest: invalid size -s 0: must be 1..8388608\n"
                + "Try 'dmaplane perf write_bw --help' for more information.\n", bad.err().replace(System.lineSeparator(), "\n"));

        Run completion = main("completion", "bash");
        for (String word : List.of("write_bw", "ib_write_bw", "send_lat", "bench", "gpudirect", "--size", "--iters",
                "--report_gbits", "--use_srq", "--connection")) {
            assertTrue(completion.out().contains(word), word);
        }
        Path script = Files.writeString(tmp.resolve("dmaplane-completion.bash"), completion.out());
        assertEquals("--size", complete(script, "dmaplane perf write_bw --si"));
        assertEquals("RC\nUC\nUD", complete(script, "dmaplane perf send_bw -c ''"));
    }

    /**
     * With nvme-user on the class path (this test's, and {@code ./dmaplane nvme}'s), {@code nvme} is its own command
     * line (spdk_nvme_perf's options, app/spdk_nvme_perf/perf.c): usage, a bad option as one line and exit 1, a run
     * on a machine of its own with the report's columns, and the options in the completion.
     */
    @Test
    void nvmeIsNvmeUsersOwnCommandLine(@TempDir Path tmp) throws Exception {
        Run help = main("nvme", "perf", "--help");
        assertEquals(0, help.code(), help.err());
        assertTrue(help.out().startsWith("Usage: dmaplane nvme perf ") && help.out().contains("-q, --io-depth=N"),
                help.out());
        assertEquals(main("help", "nvme").out(), main("nvme", "--help").out());

        Run bad = main("nvme", "perf", "-q", "32", "-o", "4096", "-w", "randread", "-t", "0");
        assertEquals(1, bad.code());
        assertEquals("dmaplane nvme perf: EINVAL: -t 0: the run time must be at least 1 second\n",
                bad.err().replace(System.lineSeparator(), "\n"));

        Run run = main("nvme", "perf", "-q", "4", "-o", "4096", "-w", "randread", "-t", "1");
        assertEquals(0, run.code(), run.err());
        assertTrue(run.out().contains("Device Information") && run.out().contains("PCIE (0000:06:00.0) NSID 1 from core  0:"),
                run.out());

        Run completion = main("completion", "bash");
        for (String word : List.of("nvme", "--io-depth", "--io-pattern", "--rwmixread", "--irq")) {
            assertTrue(completion.out().contains(word), word);
        }
        Path script = Files.writeString(tmp.resolve("dmaplane-completion.bash"), completion.out());
        assertEquals("--io-depth", complete(script, "dmaplane nvme perf --io-d"));
    }

    /** The fuzz targets the completion offers are the script's FUZZ_TARGETS, which it runs. */
    @Test
    void theFuzzTargetsAreTheScripts() throws Exception {
        String text = Files.readString(Path.of("..", "..", "dmaplane")); // surefire runs in bundles/launcher
        String table = text.substring(text.indexOf("FUZZ_TARGETS=("), text.indexOf(")", text.indexOf("FUZZ_TARGETS=(")));
        List<String> names = table.lines().skip(1).map(String::strip).filter(l -> l.startsWith("\""))
                .map(l -> l.substring(1, l.indexOf(' '))).toList();
        List<String> offered = new ArrayList<>();
        new Cli.FuzzTargets().forEach(offered::add);
        assertEquals(names, offered);
    }

    /** The words bash offers for {@code line} after sourcing {@code script}, one a line. */
    private static String complete(Path script, String line) throws Exception {
        String[] words = line.split(" ");
        // compopt only works inside a completion bash itself started: a no-op here
        String program = "source " + script + "; compopt() { :; }; COMP_WORDS=(" + line + "); COMP_CWORD=" + (words.length - 1)
                + "; COMP_LINE='" + line + "'; COMP_POINT=" + line.length()
                + "; _complete_dmaplane; printf '%s\\n' \"${COMPREPLY[@]}\"";
        Process p = new ProcessBuilder("bash", "-c", program).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
        assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), out);
        return out;
    }

    /** Every visible command's name and option names, under {@code cli}. */
    private static void collect(CommandLine cli, List<String> words) {
        for (OptionSpec o : cli.getCommandSpec().options()) {
            if (!o.hidden()) {
                words.addAll(List.of(o.names()));
            }
        }
        cli.getSubcommands().forEach((name, sub) -> {
            if (!sub.getCommandSpec().usageMessage().hidden()) {
                words.add(name);
                collect(sub, words);
            }
        });
    }
}
