package dev.dmaplane.launcher;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Several {@code dmaplane} runtimes at once: each work directory is locked while a runtime uses it, so a second
 * one on the same directory is refused with a message naming the holder, from this process or another, and never
 * wipes the running one's {@code deploy/} or Felix cache; runtimes on their own directories run side by side.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class WorkDirLockIT {
    static final Duration WAIT = Duration.ofSeconds(10);

    @TempDir
    Path tmp;

    @Test
    void aSecondRuntimeOnABusyWorkDirectoryIsRefusedAndTheFirstKeepsItsFiles() throws Exception {
        Path work = tmp.resolve("work");
        DmaplaneRuntime first = DmaplaneRuntime.start(new DmaplaneRuntime.Config(RuntimeIT.DIST, work, null, false, 100)
                .withCommand("run"), WAIT);
        try {
            Path mine = Files.writeString(first.deployDir().resolve("note.txt"), "still here");

            IllegalStateException same = assertThrows(IllegalStateException.class, () -> Main.run(new String[]{"shell",
                    "--work", work.toString(), "--dist", RuntimeIT.DIST.toString(), "lb"}, quiet(), quiet()));
            assertTrue(same.getMessage().contains("is in use by another dmaplane (pid " + ProcessHandle.current().pid()
                    + ", run since"), same.getMessage());

            // another process, as a second terminal would start it
            Path java = Path.of(System.getProperty("java.home"), "bin", "java");
            Process p = new ProcessBuilder(java.toString(), "-cp", System.getProperty("java.class.path"),
                    Main.class.getName(), "shell", "--work", work.toString(), "--dist", RuntimeIT.DIST.toString(), "lb")
                    .redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(p.waitFor(60, TimeUnit.SECONDS));
            assertEquals(1, p.exitValue(), out);
            assertTrue(out.contains("is in use by another dmaplane (pid " + ProcessHandle.current().pid()) && !out.contains("\tat "),
                    "one line naming the holder, no stack trace: " + out);

            assertEquals("still here", Files.readString(mine), "the running runtime's deploy/ was not wiped");
            DmaplaneRuntime beside = DmaplaneRuntime.start(new DmaplaneRuntime.Config(RuntimeIT.DIST, tmp.resolve("other"),
                    null, false, 100), WAIT);
            assertTrue(beside.stop(WAIT), "a runtime on its own directory runs beside the first");
        } finally {
            assertTrue(first.stop(WAIT));
        }
        DmaplaneRuntime again = DmaplaneRuntime.start(new DmaplaneRuntime.Config(RuntimeIT.DIST, work, null, false, 100), WAIT);
        assertTrue(again.stop(WAIT), "a stopped runtime gives its directory up");
    }

    private static PrintStream quiet() {
        return new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
    }
}
