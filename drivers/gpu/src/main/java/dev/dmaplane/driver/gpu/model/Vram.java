package dev.dmaplane.driver.gpu.model;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Bar;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The GPU's VRAM (TTM's {@code TTM_PL_VRAM} as the hardware sees it): the first {@code visible} bytes are the VRAM
 * BAR, shared with the CPU and peers; the rest is private to the engines, committed in 2 MiB chunks on first write
 * (unwritten VRAM reads as zeros) and released by {@link #release()}.
 */
final class Vram {
    static final long CHUNK = 2L << 20;

    private final Bar.Memory window;
    private final long size;
    private final Map<Long, MemorySegment> hidden = new ConcurrentHashMap<>();
    private final Arena arena = Arena.ofShared();
    private final String owner;

    Vram(Bar.Memory window, long size, String owner) {
        if (size < window.size()) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: vramSize %d is smaller than the VRAM BAR's %d bytes",
                    owner, size, window.size()));
        }
        this.window = window;
        this.size = size;
        this.owner = owner;
    }

    long size() {
        return size;
    }

    long visible() {
        return window.size();
    }

    /** Bytes of the hidden part committed so far. */
    long hiddenCommitted() {
        return hidden.size() * CHUNK;
    }

    /** Whether {@code length} bytes at {@code offset} lie inside VRAM. */
    boolean contains(long offset, long length) {
        return offset >= 0 && length >= 0 && offset <= size && length <= size - offset;
    }

    void read(long offset, MemorySegment dst) {
        transfer(offset, dst, false);
    }

    void write(long offset, MemorySegment src) {
        transfer(offset, src, true);
    }

    /**
     * Zeroes {@code length} bytes at {@code offset} as a fast clear does: never-written VRAM (window or hidden)
     * already reads as zeros and stays uncommitted; committed chunks are zero-filled in the range.
     */
    void zero(long offset, long length) {
        checkAccess(offset, length);
        long vis = window.size();
        long done = 0;
        while (done < length) {
            long at = offset + done;
            long n;
            if (at < vis) {
                n = Math.min(length - done, vis - at);
                window.zero(at, n);
            } else {
                long rel = at - vis;
                long within = rel % CHUNK;
                n = Math.min(length - done, CHUNK - within);
                MemorySegment chunk = hidden.get(rel / CHUNK);
                if (chunk != null) {
                    chunk.asSlice(within, n).fill((byte) 0);
                }
            }
            done += n;
        }
    }

    /** Bytes from {@code offset} to the end of its chunk (of the BAR window or of the hidden part): a view's limit. */
    long chunkRemaining(long offset) {
        long vis = window.size();
        if (offset < vis) {
            long windowChunk = Math.min(vis, Bar.Memory.CHUNK_SIZE);
            return Math.min(windowChunk - offset % windowChunk, vis - offset);
        }
        return CHUNK - (offset - vis) % CHUNK;
    }

    /**
     * A live view of {@code length} bytes at {@code offset} for an engine reading in place, within one chunk
     * ({@link #chunkRemaining}); empty when the chunk was never written (it reads as zeros and stays uncommitted).
     */
    Optional<MemorySegment> readView(long offset, long length) {
        checkAccess(offset, length);
        long vis = window.size();
        if (offset < vis) {
            return window.committedSegment(offset, length);
        }
        long rel = offset - vis;
        return Optional.ofNullable(hidden.get(rel / CHUNK)).map(c -> c.asSlice(rel % CHUNK, length));
    }

    /** A live view of {@code length} bytes at {@code offset} for an engine writing in place, within one chunk, committed. */
    MemorySegment writeView(long offset, long length) {
        checkAccess(offset, length);
        long vis = window.size();
        if (offset < vis) {
            return window.segment(offset, length);
        }
        long rel = offset - vis;
        if (rel % CHUNK + length > CHUNK) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: VRAM view %#x+%#x crosses a chunk", owner, offset, length));
        }
        return chunk(rel / CHUNK).asSlice(rel % CHUNK, length);
    }

    private void checkAccess(long offset, long len) {
        if (!contains(offset, len)) {
            throw new ErrnoException(Errno.EFAULT, String.format("%s: VRAM access %#x+%#x beyond %#x bytes of VRAM",
                    owner, offset, len, size));
        }
    }

    private void transfer(long offset, MemorySegment buf, boolean write) {
        long len = buf.byteSize();
        checkAccess(offset, len);
        long done = 0;
        long vis = window.size();
        while (done < len) {
            long at = offset + done;
            MemorySegment part;
            if (at < vis) {
                part = buf.asSlice(done, Math.min(len - done, vis - at));
                if (write) {
                    window.write(at, part);
                } else {
                    window.read(at, part);
                }
            } else {
                long rel = at - vis;
                long within = rel % CHUNK;
                part = buf.asSlice(done, Math.min(len - done, CHUNK - within));
                MemorySegment chunk = write ? chunk(rel / CHUNK) : hidden.get(rel / CHUNK);
                if (write) {
                    MemorySegment.copy(part, 0, chunk, within, part.byteSize());
                } else if (chunk == null) {
                    part.fill((byte) 0);
                } else {
                    MemorySegment.copy(chunk, within, part, 0, part.byteSize());
                }
            }
            done += part.byteSize();
        }
    }

    private MemorySegment chunk(long index) {
        return hidden.computeIfAbsent(index, k -> arena.allocate(CHUNK, 4096));
    }

    /** Frees the hidden VRAM; the engines are stopped. */
    void release() {
        hidden.clear();
        arena.close();
    }
}
