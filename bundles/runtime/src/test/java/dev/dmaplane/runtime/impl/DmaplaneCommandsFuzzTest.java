package dev.dmaplane.runtime.impl;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.runtime.topo.Graphviz;
import dev.dmaplane.testing.FuzzRuns;
import dev.dmaplane.testing.GogoCommands;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.stream.Stream;

/**
 * Fuzz target of the {@code dmaplane:} Gogo commands (bundles/README.md, {@code dmaplane:help}): every function the
 * component registers, called as the shell calls it with fuzzed string arguments, on the runtime's default machine.
 * The rule is the issue's: a command answers with its text or an {@code ErrnoException} (a usage error is
 * {@code EINVAL} naming the bad argument), within 2 s; anything else is a finding. Regression inputs are in
 * {@code DmaplaneCommandsFuzzTestInputs/arguments/}.
 */
class DmaplaneCommandsFuzzTest {
    private static final FuzzRuns RUNS = new FuzzRuns("dmaplane-commands", Duration.ofSeconds(2));
    /** Options, BDFs (of the default machine, absent, malformed), subcommands, trace kinds and counts. */
    private static final List<String> WORDS = new ArrayList<>(List.of("-t", "-v", "-vv", "-s", "-x", "-", "--", "",
            " ", "0000:03:00.0", "03:00.0", "00:01.0", "0000:06:00.0", "0000:42:00.0", "ffff:ff:1f.7", "03:00.8",
            "zz:00.0", "faults", "mappings", "groups", "domains", "0", "1", "20", "2147483647", "2147483648",
            "99999999999999999999", "-1", "+5", "\u0663", "\uff15", "bind", "--dot", "--svg", "topo.dot"));
    private static Machine machine;
    private static DriverBinder binder;
    private static GogoCommands commands;
    /** Where {@code dmaplane:topo FILE} writes: a directory of this run's own, removed afterwards. */
    private static Path topoDir;

    static {
        Arrays.stream(TraceKind.values()).map(k -> k.name().toLowerCase(Locale.ROOT)).forEach(WORDS::add);
    }

    @BeforeAll
    static void boot() throws IOException {
        machine = RuntimeComponentsTest.bootWithModels();
        binder = new DriverBinder(machine);
        topoDir = Files.createTempDirectory("dmaplane-topo-fuzz-");
        // a dot that is not installed: --svg answers ENOENT at once instead of running Graphviz per input
        commands = GogoCommands.of(new DmaplaneCommands(machine, binder, DmaBufs.of(machine),
                new Graphviz("dmaplane-fuzz-no-dot", Duration.ofSeconds(2)), topoDir));
    }

    @AfterAll
    static void shutdown() throws IOException {
        RUNS.report();
        binder.deactivate();
        machine.close();
        try (Stream<Path> files = Files.list(topoDir)) {
            for (Path f : files.toList()) {
                Files.delete(f);
            }
        }
        Files.delete(topoDir);
    }

    /** One command line: a function of the scope and up to 3 arguments. */
    @FuzzTest
    void arguments(FuzzedDataProvider data) {
        String function = data.pickValue(commands.functions());
        List<String> args = GogoCommands.arguments(data, WORDS, 3);
        RUNS.run(() -> commands.commandLine(function, args),
                () -> commands.call(function, args).isPresent() ? FuzzRuns.ACCEPTED : "no such overload");
    }
}
