package dev.dmaplane.rdma.impl;

import java.util.BitSet;

/**
 * Numbers handed out cyclically from {@code [min, max]}, as rxe's pools do with {@code xa_alloc_cyclic}: a freed
 * number is not reused until the others were, so stale numbers stay stale as long as possible.
 */
final class IndexPool {
    private final int min;
    private final int max;
    private final BitSet used = new BitSet();
    private int next;

    IndexPool(int min, int max) {
        if (min < 0 || max < min) {
            throw new IllegalArgumentException("bad pool range " + min + ".." + max);
        }
        this.min = min;
        this.max = max;
        this.next = min;
    }

    /** A free number, or -1 when all are taken. */
    synchronized int alloc() {
        int i = used.nextClearBit(next - min) + min;
        if (i > max) {
            i = used.nextClearBit(0) + min;
            if (i > max || i >= next) {
                return -1;
            }
        }
        used.set(i - min);
        next = i == max ? min : i + 1;
        return i;
    }

    synchronized void free(int i) {
        used.clear(i - min);
    }

    synchronized int inUse() {
        return used.cardinality();
    }
}
