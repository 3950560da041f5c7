package dev.dmaplane.driver.dmatest.impl;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The byte patterns of the kernel's dmatest: every byte says which buffer it belongs to (source or destination),
 * whether it lies in the area the transfer covers, and a counter of its position, so a wrong byte tells what went
 * wrong (not copied, copied from the wrong place, written outside the area).
 */
final class Patterns {
    /** Set in every source byte. */
    static final int SRC = 0x80;
    /** Set in the bytes of the area to transfer, in source and, after the copy, in destination. */
    static final int COPY = 0x40;
    /** Set in destination bytes inside the area before the copy: must all be overwritten. */
    static final int OVERWRITE = 0x20;
    /** Low bits: the inverted position, so shifted data shows. */
    static final int COUNT_MASK = 0x1f;

    private Patterns() {
    }

    /** The byte the source holds at {@code i}, inside or outside the area. */
    static byte source(long i, boolean inArea) {
        return (byte) (SRC | (inArea ? COPY : 0) | (~i & COUNT_MASK));
    }

    /** The byte the destination holds at {@code i} before the copy. */
    static byte destinationBefore(long i, boolean inArea) {
        return (byte) ((inArea ? OVERWRITE : 0) | (~i & COUNT_MASK));
    }

    /** Fills {@code buf}: source pattern (or destination pattern) with the area {@code [off, off + len)} marked. */
    static void fill(MemorySegment buf, long off, long len, boolean source) {
        for (long i = 0; i < buf.byteSize(); i++) {
            boolean in = i >= off && i < off + len;
            buf.set(ValueLayout.JAVA_BYTE, i, source ? source(i, in) : destinationBefore(i, in));
        }
    }

    /**
     * Checks the destination after copying {@code len} bytes from source offset {@code srcOff} to destination
     * offset {@code dstOff}: the area holds the source's area bytes, the rest is untouched.
     *
     * @return the number of wrong bytes
     */
    static long verifyDestination(MemorySegment dst, long srcOff, long dstOff, long len) {
        long errors = 0;
        for (long i = 0; i < dst.byteSize(); i++) {
            boolean in = i >= dstOff && i < dstOff + len;
            byte want = in ? source(i - dstOff + srcOff, true) : destinationBefore(i, false);
            if (dst.get(ValueLayout.JAVA_BYTE, i) != want) {
                errors++;
            }
        }
        return errors;
    }

    /** Checks that {@code buf} still holds the pattern {@link #fill} wrote. */
    static long verify(MemorySegment buf, long off, long len, boolean source) {
        long errors = 0;
        for (long i = 0; i < buf.byteSize(); i++) {
            boolean in = i >= off && i < off + len;
            if (buf.get(ValueLayout.JAVA_BYTE, i) != (source ? source(i, in) : destinationBefore(i, in))) {
                errors++;
            }
        }
        return errors;
    }

    /**
     * Checks the destination after a fill of {@code [off, off + len)} with {@code value}: the area holds the
     * value, the rest still holds the destination pattern.
     *
     * @return the number of wrong bytes
     */
    static long verifyFill(MemorySegment dst, long off, long len, byte value) {
        long errors = 0;
        for (long i = 0; i < dst.byteSize(); i++) {
            boolean in = i >= off && i < off + len;
            if (dst.get(ValueLayout.JAVA_BYTE, i) != (in ? value : destinationBefore(i, false))) {
                errors++;
            }
        }
        return errors;
    }

    /** Bytes at which {@code now} differs from {@code before} (same length). */
    static long changed(byte[] before, MemorySegment now) {
        long n = 0;
        for (int i = 0; i < before.length; i++) {
            if (now.get(ValueLayout.JAVA_BYTE, i) != before[i]) {
                n++;
            }
        }
        return n;
    }
}
