package dev.dmaplane.dmabuf.heap;

import java.lang.foreign.MemorySegment;

/** Where a buffer's bytes live now: host pages or a range of device memory. */
interface Placement {
    long size();

    void read(long offset, MemorySegment dst);

    void write(long offset, MemorySegment src);

    /** Gives the memory back; idempotent. */
    void free();

    String describe();
}
