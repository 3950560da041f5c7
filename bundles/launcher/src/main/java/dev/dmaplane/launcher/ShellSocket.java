package dev.dmaplane.launcher;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The running {@code dmaplane run}'s door for {@code dmaplane shell CMD}: a Unix domain socket, {@code WORK/shell.sock},
 * readable and writable by its owner only, so no network port is ever open. A client sends one Gogo command line
 * and a newline; the runtime runs it and answers {@code 0} or {@code 1} on the first line, then what the command
 * printed or why it failed, and closes. One command at a time, on the socket's own thread.
 */
final class ShellSocket implements AutoCloseable {
    /** The socket's name in the work directory. */
    static final String NAME = "shell.sock";
    /** The longest command line taken. */
    static final int MAX_LINE = 64 * 1024;
    private static final Logger LOG = LoggerFactory.getLogger(ShellSocket.class);

    /** Runs a command line in the runtime: its text, or a {@link Gogo.CommandException}. */
    interface Executor {
        String run(String line) throws Exception;
    }

    /** What the runtime answered: whether the command succeeded, and its text. */
    record Reply(boolean ok, String text) {
    }

    private final Path path;
    private final ServerSocketChannel server;
    private final Thread thread;

    private ShellSocket(Path path, ServerSocketChannel server, Executor executor) {
        this.path = path;
        this.server = server;
        this.thread = Thread.ofPlatform().name("dmaplane-shell-socket").daemon().unstarted(() -> serve(executor));
    }

    /**
     * Binds {@code WORK/shell.sock} (replacing a stale one) and starts answering.
     *
     * @throws IOException when the socket cannot be bound
     */
    static ShellSocket open(Path workDir, Executor executor) throws IOException {
        Path path = workDir.resolve(NAME);
        Files.deleteIfExists(path);
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            server.bind(UnixDomainSocketAddress.of(path));
            Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-------"));
        } catch (IOException | RuntimeException e) {
            server.close();
            throw e;
        }
        ShellSocket s = new ShellSocket(path, server, executor);
        s.thread.start();
        return s;
    }

    private void serve(Executor executor) {
        while (server.isOpen()) {
            try (SocketChannel client = server.accept()) {
                answer(client, executor);
            } catch (ClosedChannelException e) {
                return; // closed: the runtime is stopping
            } catch (IOException e) {
                LOG.warn("dmaplane shell socket {}: a client's connection failed", path, e);
            }
        }
    }

    private static void answer(SocketChannel client, Executor executor) throws IOException {
        String line = readLine(client);
        Reply reply;
        if (line == null) {
            reply = new Reply(false, "no command line (at most " + MAX_LINE + " bytes, ended by a newline)");
        } else {
            try {
                reply = new Reply(true, executor.run(line));
            } catch (Gogo.CommandException e) {
                reply = new Reply(false, e.getMessage());
            } catch (Exception e) {
                LOG.error("dmaplane shell socket: '{}' failed", line, e);
                reply = new Reply(false, e.toString());
            }
        }
        ByteBuffer out = ByteBuffer.wrap(((reply.ok() ? "0\n" : "1\n") + reply.text()).getBytes(StandardCharsets.UTF_8));
        while (out.hasRemaining()) {
            client.write(out);
        }
    }

    /** The bytes up to the first newline, or null if the peer closed first or sent more than {@link #MAX_LINE}. */
    private static String readLine(SocketChannel ch) throws IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        ByteBuffer b = ByteBuffer.allocate(4096);
        while (buf.size() <= MAX_LINE) {
            b.clear();
            if (ch.read(b) < 0) {
                return null;
            }
            b.flip();
            while (b.hasRemaining()) {
                byte c = b.get();
                if (c == '\n') {
                    return buf.toString(StandardCharsets.UTF_8);
                }
                buf.write(c);
            }
        }
        return null;
    }

    /**
     * Sends {@code line} to the runtime listening on {@code socket} and waits up to {@code timeout} for its reply.
     *
     * @return the reply, or empty when nothing listens there (no socket, or a stale one of a runtime that is gone)
     * @throws IOException when the runtime took the line but the answer did not come in time or broke off
     */
    static Optional<Reply> ask(Path socket, String line, Duration timeout) throws IOException, InterruptedException {
        if (!Files.exists(socket)) {
            return Optional.empty();
        }
        SocketChannel ch;
        try {
            ch = SocketChannel.open(UnixDomainSocketAddress.of(socket));
        } catch (IOException e) {
            return Optional.empty(); // connection refused: the runtime that bound it is gone
        }
        try (ch; ExecutorService reader = Executors.newSingleThreadExecutor(r -> new Thread(r, "dmaplane-shell-client"))) {
            ByteBuffer out = ByteBuffer.wrap((line.replace('\n', ' ') + "\n").getBytes(StandardCharsets.UTF_8));
            while (out.hasRemaining()) {
                ch.write(out);
            }
            Future<byte[]> answer = reader.submit(() -> {
                ByteArrayOutputStream buf = new ByteArrayOutputStream();
                ByteBuffer b = ByteBuffer.allocate(8192);
                while (ch.read(b.clear()) >= 0) {
                    buf.write(b.array(), 0, b.position());
                }
                return buf.toByteArray();
            });
            String text;
            try {
                text = new String(answer.get(timeout.toMillis(), TimeUnit.MILLISECONDS), StandardCharsets.UTF_8);
            } catch (TimeoutException e) {
                ch.close(); // ends the reader's blocked read
                throw new IOException("the runtime at " + socket + " did not answer '" + line + "' within "
                        + timeout.toSeconds() + " s", e);
            } catch (ExecutionException e) {
                throw new IOException("reading the answer of the runtime at " + socket + " failed: " + e.getCause(),
                        e.getCause());
            }
            int nl = text.indexOf('\n');
            if (nl != 1 || (text.charAt(0) != '0' && text.charAt(0) != '1')) {
                throw new IOException("the runtime at " + socket + " answered no status line: '" + text + "'");
            }
            return Optional.of(new Reply(text.charAt(0) == '0', text.substring(2)));
        }
    }

    /** Stops answering and removes the socket. */
    @Override
    public void close() throws IOException, InterruptedException {
        server.close();
        thread.join(Duration.ofSeconds(10));
        Files.deleteIfExists(path);
    }
}
