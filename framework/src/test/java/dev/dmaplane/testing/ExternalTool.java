package dev.dmaplane.testing;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * A real program a test uses as its oracle (pciutils' {@code lspci}, Wireshark's {@code tshark}), found on the
 * {@code PATH}. A test that needs one runs wherever it is installed, is skipped with a message saying how to install
 * it where it is not, and fails where the build demands it: CI passes {@value #REQUIRE_PROPERTY} with a
 * comma-separated list of the programs it installed, so that a missing one cannot turn the test into a silent skip.
 */
public record ExternalTool(String name, Path path) {
    /** System property listing the programs that must be present (for example {@code lspci,tshark}). */
    public static final String REQUIRE_PROPERTY = "dmaplane.require.tools";

    /**
     * The program {@code name} on the {@code PATH}: fails the test if {@value #REQUIRE_PROPERTY} names it and it is
     * missing, otherwise skips the test with {@code installHint}.
     */
    public static ExternalTool require(String name, String installHint) {
        Optional<Path> found = onPath(name);
        if (found.isEmpty() && required().contains(name)) {
            fail(name + " is not on the PATH but -D" + REQUIRE_PROPERTY + " requires it; install it: " + installHint);
        }
        assumeTrue(found.isPresent(), () -> name + " is not on the PATH, test skipped; install it to run it: "
                + installHint);
        return new ExternalTool(name, found.get());
    }

    /** The programs {@value #REQUIRE_PROPERTY} names. */
    static List<String> required() {
        String v = System.getProperty(REQUIRE_PROPERTY, "");
        return Arrays.stream(v.split(",")).map(String::strip).filter(s -> !s.isEmpty()).toList();
    }

    /** The first executable file {@code name} in a directory of the {@code PATH}. */
    static Optional<Path> onPath(String name) {
        String path = System.getenv().getOrDefault("PATH", "");
        return Arrays.stream(path.split(File.pathSeparator)).filter(d -> !d.isEmpty()).map(d -> Path.of(d, name))
                .filter(Files::isExecutable).findFirst();
    }

    /**
     * Runs the program with {@code args} and returns what it printed on standard output; fails the test if it does
     * not exit within {@code timeout} (it is killed) or exits with a status other than 0, quoting its standard error.
     */
    public String run(Duration timeout, String... args) throws IOException, InterruptedException {
        Path out = Files.createTempFile(name + "-", ".out");
        Path err = Files.createTempFile(name + "-", ".err");
        try {
            List<String> command = new ArrayList<>();
            command.add(path.toString());
            command.addAll(List.of(args));
            Process p = new ProcessBuilder(command).redirectOutput(out.toFile()).redirectError(err.toFile())
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
            boolean exited = p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS);
            if (!exited) {
                p.destroyForcibly();
                assertTrue(p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS), command + " did not die when killed");
                fail(command + " did not finish within " + timeout);
            }
            String stderr = Files.readString(err, StandardCharsets.UTF_8);
            assertEquals(0, p.exitValue(), () -> command + " failed: " + stderr);
            return Files.readString(out, StandardCharsets.UTF_8);
        } finally {
            Files.deleteIfExists(out);
            Files.deleteIfExists(err);
        }
    }
}
