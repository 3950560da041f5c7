package dev.dmaplane.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The figure line of an adversarial test (attempts, cycles, bytes checked), for docs/RELIABILITY.md: printed to
 * standard error and written to {@code target/adversarial/<test>.txt} of the module under test, where
 * {@code ./dmaplane reliability} reads it whatever the module's log level.
 */
public final class Figures {
    private Figures() {
    }

    public static void report(String test, String line) {
        System.err.println(test + ": " + line);
        write("adversarial", test, test + ": " + line);
    }

    /**
     * Writes {@code line} to {@code target/<dir>/<name>.txt} of the module under test (Maven's {@code basedir}), where
     * the long-run commands of {@code ./dmaplane} read the figures of a run.
     */
    static void write(String dir, String name, String line) {
        Path folder = Path.of(System.getProperty("basedir", "."), "target", dir);
        try {
            Files.createDirectories(folder);
            Files.writeString(folder.resolve(name + ".txt"), line + "\n", StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the figures of " + name + " to " + folder, e);
        }
    }
}
