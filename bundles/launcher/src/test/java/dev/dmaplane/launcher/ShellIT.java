package dev.dmaplane.launcher;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code dmaplane shell CMD} beside a running {@code dmaplane run}: the command reaches the running runtime through
 * its {@code WORK/shell.sock} instead of booting a second one (which the work directory's lock would refuse), and
 * the run ends at the end of its input as before, taking the socket with it.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class ShellIT {
    @TempDir
    Path tmp;

    @Test
    void shellAnswersFromTheRunningRun() throws Exception {
        Path work = tmp.resolve("run");
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        Process run = new ProcessBuilder(java.toString(), "--enable-native-access=ALL-UNNAMED", "-cp",
                System.getProperty("java.class.path"), Main.class.getName(), "run", "--work", work.toString(),
                "--dist", RuntimeIT.DIST.toString()).redirectErrorStream(true)
                .redirectOutput(tmp.resolve("run.log").toFile()).start();
        try {
            Path sock = work.resolve(ShellSocket.NAME);
            DemoKit.await("the run's shell socket", Duration.ofSeconds(90),
                    () -> Files.exists(sock) ? Optional.of(true) : Optional.empty());

            ByteArrayOutputStream out = new ByteArrayOutputStream();
            ByteArrayOutputStream err = new ByteArrayOutputStream();
            String[] shell = {"shell", "--work", work.toString(), "--dist", RuntimeIT.DIST.toString(),
                    "dmaplane:lspci", "-nn", "-s", "04:00.0"};
            assertEquals(0, Main.run(shell, print(out), print(err)), err::toString);
            assertEquals("04:00.0 Ethernet controller [0200]: Device [1da0:0002]\n", out.toString(StandardCharsets.UTF_8));

            out.reset();
            String[] bad = {"shell", "--work", work.toString(), "--dist", RuntimeIT.DIST.toString(), "dmaplane:lspci",
                    "-s", "zz"};
            assertEquals(1, Main.run(bad, print(out), print(err)));
            assertTrue(err.toString(StandardCharsets.UTF_8).contains("dmaplane: dmaplane:lspci -s zz: ")
                    && err.toString(StandardCharsets.UTF_8).contains("-s: Invalid slot number"), err.toString());
            assertTrue(run.isAlive(), "the run goes on");

            out.reset();
            String[] bundles = {"shell", "--work", work.toString(), "--dist", RuntimeIT.DIST.toString(), "lb", "-s"};
            assertEquals(0, Main.run(bundles, print(out), print(err)), err::toString);
            String lb = out.toString(StandardCharsets.UTF_8);
            assertTrue(lb.lines().anyMatch(l -> l.contains("Active") && l.contains("org.apache.felix.gogo.jline"))
                    && lb.lines().anyMatch(l -> l.contains("Active") && l.contains("|org.jline ")), "the run's "
                    + "shell is Gogo's JLine shell (history, line editing):\n" + lb);
        } finally {
            run.getOutputStream().close(); // end of input: Gogo's shell stops the framework, as Ctrl-D does
            assertTrue(run.waitFor(60, TimeUnit.SECONDS), () -> "run did not end: " + log());
        }
        assertEquals(0, run.exitValue(), this::log);
        assertFalse(Files.exists(work.resolve(ShellSocket.NAME)), "the socket leaves with the run");
    }

    private String log() {
        try {
            return Files.readString(tmp.resolve("run.log"));
        } catch (IOException e) {
            return "(no log: " + e + ")";
        }
    }

    private static PrintStream print(ByteArrayOutputStream b) {
        return new PrintStream(b, true, StandardCharsets.UTF_8);
    }
}
