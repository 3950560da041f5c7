package dev.dmaplane.launcher;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The runtime's shell socket ({@code unix(7)}, {@code AF_UNIX} stream sockets): a command line in, the status and
 * the command's text out; only the owner may connect; no socket, or a stale one nobody listens on, is no runtime.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class ShellSocketTest {
    private static final Duration WAIT = Duration.ofSeconds(10);

    @TempDir
    Path dir;

    @Test
    void aCommandLineGetsItsTextOrItsFailure() throws Exception {
        try (ShellSocket s = ShellSocket.open(dir, line -> {
            if (line.equals("bad")) {
                throw new Gogo.CommandException("gogo: CommandNotFoundException: Command not found: bad", null);
            }
            return "ran " + line;
        })) {
            Path sock = dir.resolve(ShellSocket.NAME);
            assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(sock)));
            assertEquals(Optional.of(new ShellSocket.Reply(true, "ran dmaplane:lspci -s 03:00.0")),
                    ShellSocket.ask(sock, "dmaplane:lspci -s 03:00.0", WAIT));
            assertEquals(Optional.of(new ShellSocket.Reply(false, "gogo: CommandNotFoundException: Command not found: bad")),
                    ShellSocket.ask(sock, "bad", WAIT));
            assertEquals(Optional.of(new ShellSocket.Reply(true, "ran a b")), ShellSocket.ask(sock, "a\nb", WAIT),
                    "one line: a newline inside is a blank");
        }
        assertFalse(Files.exists(dir.resolve(ShellSocket.NAME)), "closing removes the socket");
    }

    @Test
    void noSocketOrAStaleOneIsNoRuntime() throws Exception {
        Path sock = dir.resolve(ShellSocket.NAME);
        assertEquals(Optional.empty(), ShellSocket.ask(sock, "lb", WAIT));
        try (ServerSocketChannel gone = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            gone.bind(UnixDomainSocketAddress.of(sock));
        }
        assertTrue(Files.exists(sock), "a runtime that died leaves its socket file");
        assertEquals(Optional.empty(), ShellSocket.ask(sock, "lb", WAIT));
    }

    @Test
    void anAnswerThatDoesNotComeInTimeIsAnError() throws Exception {
        CountDownLatch release = new CountDownLatch(1);
        try (ShellSocket s = ShellSocket.open(dir, line -> {
            assertTrue(release.await(WAIT.toSeconds(), TimeUnit.SECONDS));
            return "late";
        })) {
            IOException e = assertThrows(IOException.class,
                    () -> ShellSocket.ask(dir.resolve(ShellSocket.NAME), "slow", Duration.ofMillis(200)));
            assertTrue(e.getMessage().contains("did not answer 'slow' within"), e.getMessage());
            release.countDown();
        }
    }
}
