package dev.dmaplane.launcher;

import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Predicate;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code dmaplane run} in a terminal, as a user types at it: the launcher's process in a pseudo-terminal (util-linux
 * {@code script(1)}, the way a terminal emulator runs it), a command typed, then the up arrow ({@code ESC [ A}, the
 * {@code kcuu1} of the {@code ansi} terminfo entry) and Enter run it again from JLine's history
 * ({@code LineReaderImpl}'s {@code up-line-or-search} widget), Gogo JLine's {@code history} builtin lists it, the
 * history is kept in {@code ~/.gogo.history} (Felix Gogo JLine's {@code Shell.gosh}), and {@code exit} ends the
 * session and the process. Runs where {@code script} is on the {@code PATH} (Debian's essential bsdutils), and
 * fails without it when {@code -Ddmaplane.require.tools} names it (CI).
 *
 * <p>The terminal is a real one on purpose: a terminal built on streams would be handed to the shell whole
 * ({@code TerminalBuilder.setTerminalOverride}), skipping the part that failed, JLine finding its terminal providers
 * through the thread's context class loader when the launcher starts the shell bundle. Without them JLine makes a
 * dumb terminal, the line is read in cooked mode and the up arrow is three characters of a command line.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class ShellTerminalIT {
    static final Duration WAIT = Duration.ofSeconds(90);
    static final String COMMAND = "dmaplane:lspci -s 04:00.0";
    static final String ANSWER = "04:00.0 Ethernet controller: Device 1da0:0002";
    /** CSI and OSC sequences and the keypad and charset selections JLine writes around what it displays. */
    static final Pattern ESCAPES = Pattern.compile("\u001B(\\[[0-9;?]*[ -/]*[@-~]|\\][^\u0007]*\u0007|[()][0-9A-Za-z]|[=>])");

    @TempDir
    Path tmp;

    @Test
    void upArrowRunsTheLastCommandAgainHistoryListsItAndExitEnds() throws Exception {
        ExternalTool script = ExternalTool.require("script", "apt-get install bsdutils (util-linux's script)");
        Path home = Files.createDirectories(tmp.resolve("home"));
        Path log = tmp.resolve("terminal.log");
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        // a terminal of 120 x 40, as a window has (script's own has no size when its input is not a terminal)
        String launcher = "stty cols 120 rows 40; exec " + String.join(" ", List.of(quote(java.toString()),
                "--enable-native-access=ALL-UNNAMED", quote("-Duser.home=" + home), "-cp", quote(System.getProperty("java.class.path")),
                Main.class.getName(), "run", "--work", quote(tmp.resolve("work").toString()),
                "--dist", quote(RuntimeIT.DIST.toString())));
        ProcessBuilder pb = new ProcessBuilder(script.path().toString(), "--quiet", "--flush", "--return", "--command",
                launcher, "/dev/null").redirectErrorStream(true).redirectOutput(log.toFile());
        pb.environment().put("TERM", "ansi");
        pb.environment().put("HOME", home.toString());
        Process terminal = pb.start();
        try (OutputStream keys = terminal.getOutputStream()) {
            type(keys, COMMAND + "\r");
            awaitScreen(log, "the command's answer", s -> count(s, ANSWER) == 1);
            type(keys, "\u001B[A\r");
            awaitScreen(log, "the up arrow's second run", s -> count(s, ANSWER) == 2);
            type(keys, "history\r");
            String history = awaitScreen(log, "history's list", s -> Pattern.compile("(?m)^\\s+1\\s+history$")
                    .matcher(s).find());
            assertTrue(Pattern.compile("(?m)^\\s+0\\s+" + Pattern.quote(COMMAND) + "$").matcher(history).find(),
                    history);
            type(keys, "exit\r");
            awaitScreen(log, "exit's answer", s -> s.contains("stopping the runtime"));
        } finally {
            if (!terminal.waitFor(60, TimeUnit.SECONDS)) {
                terminal.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
        }
        String screen = screen(log);
        assertEquals(0, terminal.exitValue(), screen);
        assertFalse(screen.contains("Unable to create a system terminal"), screen);
        assertEquals(2, count(screen, ANSWER), screen);
        List<String> kept = Files.readAllLines(home.resolve(".gogo.history"), StandardCharsets.UTF_8);
        assertTrue(kept.stream().anyMatch(l -> l.endsWith(":" + COMMAND)), "JLine's history file: " + kept);
    }

    private static void type(OutputStream keys, String text) throws IOException {
        keys.write(text.getBytes(StandardCharsets.UTF_8));
        keys.flush();
    }

    /** Waits (bounded) until the screen, without its escape sequences, passes {@code test}; returns it. */
    private static String awaitScreen(Path log, String what, Predicate<String> test)
            throws Exception {
        try {
            return DemoKit.await(what, WAIT, () -> {
                String s = screen(log);
                return test.test(s) ? Optional.of(s) : Optional.empty();
            });
        } catch (TimeoutException e) {
            throw new AssertionError(e.getMessage() + "; the terminal showed:\n" + screen(log), e);
        }
    }

    /** What the terminal showed, its escape sequences and carriage returns removed. */
    private static String screen(Path log) {
        try {
            String shown = new String(Files.readAllBytes(log), StandardCharsets.UTF_8); // may end inside a character
            return ESCAPES.matcher(shown).replaceAll("").replace("\r", "");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static int count(String s, String what) {
        int n = 0;
        for (int i = s.indexOf(what); i >= 0; i = s.indexOf(what, i + what.length())) {
            n++;
        }
        return n;
    }

    /** {@code s} as one word of a POSIX shell command line ({@code script --command} runs it with {@code sh -c}). */
    private static String quote(String s) {
        return "'" + s.replace("'", "'\\''") + "'";
    }
}
