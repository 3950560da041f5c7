package dev.dmaplane.driver.softroce;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.testing.FuzzRuns;
import dev.dmaplane.testing.GogoCommands;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

import java.time.Duration;
import java.util.List;

/**
 * Fuzz target of the {@code rxe:} Gogo commands ({@code rxe:carrier DEV up|down}, rxe's netdev notifier for
 * {@code NETDEV_CHANGE}): the functions the driver component registers, called as the shell calls them with fuzzed
 * string arguments, on the default machine with the Soft-RoCE driver bound to both HCAs. The rule is the issue's: a
 * command answers with its text or an {@code ErrnoException}, within 2 s; anything else is a finding. Each input
 * runs up to 4 command lines and ends with both carriers up again. Regression inputs are in
 * {@code SoftRoceCommandsFuzzTestInputs/arguments/}.
 */
class SoftRoceCommandsFuzzTest {
    private static final FuzzRuns RUNS = new FuzzRuns("rxe-commands", Duration.ofSeconds(2));
    private static final List<String> WORDS = List.of("rxe0", "rxe1", "rxe2", "RXE0", "rxe0 ", "up", "down", "UP",
            "Down", "", " ", "-", "null", "eth4", "rxe0/1");
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
        commands = GogoCommands.of(driver);
    }

    @AfterAll
    static void shutdown() {
        RUNS.report();
        machine.devices().unregisterDriver(driver);
        core.close();
        machine.close();
    }

    @FuzzTest
    void arguments(FuzzedDataProvider data) {
        int lines = data.consumeInt(1, 4);
        StringBuilder input = new StringBuilder();
        RUNS.run(input::toString, () -> {
            try {
                Object answer = null;
                for (int i = 0; i < lines; i++) {
                    String function = data.pickValue(commands.functions());
                    List<String> args = GogoCommands.arguments(data, WORDS, 3);
                    input.append(commands.commandLine(function, args)).append('\n');
                    answer = commands.call(function, args).orElse(null);
                }
                return answer != null ? FuzzRuns.ACCEPTED : "no such overload";
            } finally {
                driver.carrier("rxe0", "up");
                driver.carrier("rxe1", "up");
            }
        });
    }
}
