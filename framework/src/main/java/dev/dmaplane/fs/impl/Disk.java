package dev.dmaplane.fs.impl;

import dev.dmaplane.mem.HostMemory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.concurrent.ConcurrentSkipListMap;

/**
 * The block device under a non-DAX file: one page-sized block per page index, kept as a {@code byte[]} that is
 * not host memory, so a page that is not cached is really gone from RAM. Its {@link PageCacheStore} guards every
 * change; the index is a concurrent map so that {@link #holds} may be asked without that lock.
 */
final class Disk {
    private static final int BLOCK = (int) HostMemory.PAGE_SIZE;

    private final ConcurrentSkipListMap<Long, byte[]> blocks = new ConcurrentSkipListMap<>();

    /** Fills {@code frame} with block {@code index}, zeroes for a hole ({@code read_folio}). */
    void readInto(long index, MemorySegment frame) {
        byte[] b = blocks.get(index);
        if (b == null) {
            frame.fill((byte) 0);
        } else {
            MemorySegment.copy(b, 0, frame, ValueLayout.JAVA_BYTE, 0, BLOCK);
        }
    }

    /** Whether block {@code index} exists: a page never written, or punched out, is a hole. */
    boolean holds(long index) {
        return blocks.containsKey(index);
    }

    /** Block {@code index} as a segment (the disk's own bytes, read-only), or null for a hole. */
    MemorySegment block(long index) {
        byte[] b = blocks.get(index);
        return b == null ? null : MemorySegment.ofArray(b).asReadOnly();
    }

    /** Stores the page in {@code frame} as block {@code index} ({@code writepage}). */
    void write(long index, MemorySegment frame) {
        byte[] b = blocks.computeIfAbsent(index, i -> new byte[BLOCK]);
        MemorySegment.copy(frame, ValueLayout.JAVA_BYTE, 0, b, 0, BLOCK);
    }

    /** Zeroes bytes {@code [from, to)} of block {@code index} if it exists. */
    void zero(long index, int from, int to) {
        byte[] b = blocks.get(index);
        if (b != null) {
            Arrays.fill(b, from, to, (byte) 0);
        }
    }

    /** Frees blocks {@code [firstIndex, endIndex)}. */
    void remove(long firstIndex, long endIndex) {
        blocks.subMap(firstIndex, endIndex).clear();
    }

    long blocks() {
        return blocks.size();
    }
}
