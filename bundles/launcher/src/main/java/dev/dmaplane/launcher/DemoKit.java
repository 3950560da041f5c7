package dev.dmaplane.launcher;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeoutException;
import java.util.function.Supplier;

/**
 * What every demo prints with and waits with: numbered sections, notes, checks that count their failures, Gogo
 * lines echoed with their output, atomic copies into {@code deploy/}, and bounded polling waits.
 */
final class DemoKit {
    static final Duration WAIT = Duration.ofSeconds(10);

    private final PrintStream out;
    private final List<String> failures = new ArrayList<>();

    DemoKit(PrintStream out) {
        this.out = out;
    }

    PrintStream out() {
        return out;
    }

    void section(int n, String title) {
        out.println();
        out.println("[" + n + "] " + title);
    }

    void note(String fmt, Object... args) {
        out.println("  " + String.format(fmt, args));
    }

    void check(boolean ok, String fmt, Object... args) {
        String what = String.format(fmt, args);
        out.println("  " + (ok ? "ok    " : "FAILED") + " " + what);
        if (!ok) {
            failures.add(what);
        }
    }

    /** A failure found outside a check (a timeout). */
    void failed(String what) {
        failures.add(what);
        out.println("  FAILED: " + what);
    }

    /** Prints the verdict; returns the exit code (0 when every check passed). */
    int verdict() {
        out.println();
        if (failures.isEmpty()) {
            out.println("demo passed");
            return 0;
        }
        out.println("demo FAILED: " + failures.size() + " check(s): " + String.join("; ", failures));
        return 1;
    }

    /** Runs a Gogo line, echoing it and its output indented. */
    String shell(DmaplaneRuntime rt, String line) throws Exception {
        return shell(rt, line, WAIT);
    }

    String shell(DmaplaneRuntime rt, String line, Duration timeout) throws Exception {
        out.println("  g! " + line);
        String text = rt.gogo(line, timeout);
        for (String l : text.split("\n", -1)) {
            out.println("     " + l);
        }
        return text;
    }

    /** {@link #shell}, once Gogo knows the line's command ({@link #gogoOnceKnown}, at most {@link #WAIT}). */
    String shellOnceKnown(DmaplaneRuntime rt, String line, Duration timeout) throws Exception {
        out.println("  g! " + line);
        String text = gogoOnceKnown(rt, line, timeout);
        for (String l : text.split("\n", -1)) {
            out.println("     " + l);
        }
        return text;
    }

    /**
     * Runs {@code line} (for at most {@code timeout}) once Gogo knows its command. A bundle's command service can be
     * in the registry before Gogo's command tracker is told of it (the OSGi Core spec, 5.6 Service Events, orders no
     * listeners), and until then Gogo answers CommandNotFoundException without running anything: that answer alone
     * is retried, for at most {@link #WAIT}.
     */
    static String gogoOnceKnown(DmaplaneRuntime rt, String line, Duration timeout)
            throws TimeoutException, InterruptedException {
        String command = line.split(" ", 2)[0];
        String notFound = "Command not found: " + command;
        return await(command + " known to Gogo", () -> {
            try {
                return Optional.of(rt.gogo(line, timeout));
            } catch (Gogo.CommandException e) {
                if (e.getMessage().contains(notFound)) {
                    return Optional.empty();
                }
                throw new IllegalStateException(line + ": " + e.getMessage(), e);
            } catch (Exception e) {
                throw new IllegalStateException(line + ": " + e, e);
            }
        });
    }

    /** Copies the jar into deploy/ atomically, so File Install never sees half a file. */
    static Path deploy(Path jar, Path deployDir) throws IOException {
        Path staging = Files.createTempFile(deployDir.getParent(), "deploy-", ".jar.part");
        Files.copy(jar, staging, StandardCopyOption.REPLACE_EXISTING);
        return Files.move(staging, deployDir.resolve(jar.getFileName()), StandardCopyOption.ATOMIC_MOVE);
    }

    /** Polls {@code probe} until it yields a value, for at most {@link #WAIT}. */
    static <T> T await(String what, Supplier<Optional<T>> probe) throws TimeoutException, InterruptedException {
        return await(what, WAIT, probe);
    }

    static <T> T await(String what, Duration timeout, Supplier<Optional<T>> probe)
            throws TimeoutException, InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            Optional<T> v = probe.get();
            if (v.isPresent()) {
                return v.get();
            }
            if (System.nanoTime() - deadline >= 0) {
                throw new TimeoutException(what + ": not within " + timeout.toSeconds() + " s");
            }
            Thread.sleep(20); // polling period of a bounded wait
        }
    }

    static String since(long t0) {
        return String.format("%.2f s", (System.nanoTime() - t0) / 1e9);
    }
}
