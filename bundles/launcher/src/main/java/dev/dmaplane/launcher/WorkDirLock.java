package dev.dmaplane.launcher;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Who owns a work directory: an exclusive lock on the file beside it ({@code WORK.lock}), held while a runtime uses
 * the directory, so that a second {@code dmaplane} never wipes the Felix cache and {@code deploy/} of a running one.
 * The operating system drops the lock when the process ends, however it ends. The file names the holder (pid,
 * command, start time) for the refusal message.
 * <p>
 * File locks belong to the process, and closing any channel on the file drops every lock the process holds on it
 * ({@link FileLock}'s platform notes, POSIX {@code fcntl}): so the locks this JVM holds are also kept in a table, and
 * a second runtime of this process is refused from the table without ever opening the file.
 */
final class WorkDirLock implements AutoCloseable {
    /** Lock files this JVM holds, with their holder text. */
    private static final Map<Path, String> HELD = new ConcurrentHashMap<>();

    private final Path file;
    private final FileChannel channel;
    private final FileLock lock;

    private WorkDirLock(Path file, FileChannel channel, FileLock lock) {
        this.file = file;
        this.channel = channel;
        this.lock = lock;
    }

    /** The lock file of {@code work}: beside it, so wiping the directory leaves it alone. */
    static Path lockFile(Path work) {
        Path abs = work.toAbsolutePath().normalize();
        return abs.resolveSibling(abs.getFileName() + ".lock");
    }

    /**
     * Takes the lock of {@code work} for {@code command}.
     *
     * @throws IllegalStateException naming the holder when another runtime (another process, or this one) has it
     */
    static WorkDirLock acquire(Path work, String command) throws IOException {
        Path file = lockFile(work);
        String holder = "pid " + ProcessHandle.current().pid() + ", " + command + " since " + Instant.now();
        String mine = HELD.putIfAbsent(file, holder);
        if (mine != null) {
            throw inUse(work, mine);
        }
        try {
            Files.createDirectories(file.getParent());
            FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE);
            FileLock lock;
            try {
                lock = ch.tryLock();
                if (lock == null) {
                    throw inUse(work, Files.readString(file, StandardCharsets.UTF_8).strip());
                }
                ch.truncate(0);
                ch.write(ByteBuffer.wrap(holder.getBytes(StandardCharsets.UTF_8)));
                ch.force(false);
            } catch (IOException | RuntimeException e) {
                ch.close();
                throw e;
            }
            return new WorkDirLock(file, ch, lock);
        } catch (IOException | RuntimeException e) {
            HELD.remove(file);
            throw e;
        }
    }

    private static IllegalStateException inUse(Path work, String holder) {
        return new IllegalStateException("work directory " + work.toAbsolutePath() + " is in use by another dmaplane"
                + (holder.isEmpty() ? "" : " (" + holder + ")") + "; give this one its own with --work DIR");
    }

    /** Gives the directory up; a second call does nothing. */
    @Override
    public synchronized void close() throws IOException {
        if (!channel.isOpen()) {
            return;
        }
        try {
            channel.truncate(0);
            lock.release();
        } finally {
            channel.close();
            HELD.remove(file);
        }
    }
}
