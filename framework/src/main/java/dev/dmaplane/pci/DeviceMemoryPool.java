package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The arena device memory (BAR-backed VRAM and the like) is carved from; one per topology, closed with it.
 * Memory is only taken from it when a BAR chunk is first written, so a large BAR costs nothing until used.
 */
final class DeviceMemoryPool implements AutoCloseable {
    private final Arena arena = Arena.ofShared();
    private volatile boolean closed;

    /** A zeroed, page-aligned segment of {@code bytes} for {@code what}. */
    synchronized MemorySegment allocate(long bytes, String what) {
        checkOpen(what);
        try {
            return arena.allocate(bytes, 4096);
        } catch (OutOfMemoryError e) {
            throw new ErrnoException(Errno.ENOMEM, "cannot allocate " + bytes + " bytes of device memory for " + what, e);
        }
    }

    void checkOpen(String what) {
        if (closed) {
            throw new ErrnoException(Errno.ENODEV, what + ": the topology owning this device memory is closed");
        }
    }

    boolean isClosed() {
        return closed;
    }

    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            arena.close();
        }
    }
}
