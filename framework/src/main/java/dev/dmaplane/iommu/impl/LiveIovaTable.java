package dev.dmaplane.iommu.impl;

/**
 * The set of IOVAs currently handed out, with the exact size each was allocated with, so that a free can be checked
 * against a live allocation (the kernel trusts its callers; dmaplane reports a bad or double free as {@code EINVAL}).
 *
 * <p>Striped by a hash of the frame number. Each stripe has a padded control array (its {@link SlotLock} word, live
 * allocations and bytes) and an open-addressing table of interleaved frame/size pairs with linear
 * probing and backward-shift deletion, so every operation is O(1) expected and threads freeing unrelated IOVAs
 * rarely meet. Frame 0 marks an empty slot, which is why an allocator never hands out IOVA 0.
 */
public final class LiveIovaTable {
    /** {@link #remove} result: no live allocation starts at that frame. */
    public static final long ABSENT = -1;

    private static final int STRIPES = 64;
    private static final long GOLDEN = 0x9E3779B97F4A7C15L;
    private static final int LOCK = SlotLock.PAD;
    private static final int COUNT = LOCK + 1;
    private static final int BYTES = LOCK + 2;
    private static final int CONTROL_LONGS = BYTES + 1 + SlotLock.PAD;
    private static final int INITIAL_PAIRS = 16;

    private final long[][] control = new long[STRIPES][];
    /** Per stripe: {@code [frame, size]} pairs; replaced only under the stripe's lock when it grows. */
    private final long[][] tables = new long[STRIPES][];

    public LiveIovaTable() {
        for (int i = 0; i < STRIPES; i++) {
            control[i] = new long[CONTROL_LONGS];
            tables[i] = new long[2 * INITIAL_PAIRS];
        }
    }

    private static long mix(long pfn) {
        long h = pfn * GOLDEN;
        return h ^ (h >>> 29);
    }

    private static int stripe(long mixed) {
        return (int) (mixed >>> 58);
    }

    /**
     * Records a new live allocation.
     *
     * @param pfn          first frame, not 0
     * @param size         the size the caller asked for, in bytes
     * @param grantedBytes the bytes of IOVA space it occupies (rounded up)
     * @throws IllegalStateException if {@code pfn} is already live (an allocator bug)
     */
    public void add(long pfn, long size, long grantedBytes) {
        long h = mix(pfn);
        int st = stripe(h);
        long[] c = control[st];
        SlotLock.lock(c, LOCK);
        try {
            if ((c[COUNT] + 1) * 2 > tables[st].length / 2) {
                tables[st] = grown(tables[st]);
            }
            insert(tables[st], pfn, size, h);
            c[COUNT]++;
            c[BYTES] += grantedBytes;
        } finally {
            SlotLock.unlock(c, LOCK);
        }
    }

    /**
     * Removes the live allocation at {@code pfn} if it was made with exactly {@code size} bytes.
     *
     * @return {@code size} when removed; {@link #ABSENT} when nothing is live there; otherwise the size the live
     *         allocation was made with, which stays live
     */
    public long remove(long pfn, long size, long grantedBytes) {
        long h = mix(pfn);
        int st = stripe(h);
        long[] c = control[st];
        SlotLock.lock(c, LOCK);
        try {
            long found = removeIfSize(tables[st], pfn, size, h);
            if (found == size) {
                c[COUNT]--;
                c[BYTES] -= grantedBytes;
            }
            return found;
        } finally {
            SlotLock.unlock(c, LOCK);
        }
    }

    /** Number of live allocations; exact when no allocation or free runs at the same time. */
    public long count() {
        return sum(COUNT);
    }

    /** IOVA bytes held by live allocations; exact when no allocation or free runs at the same time. */
    public long bytes() {
        return sum(BYTES);
    }

    private long sum(int field) {
        long n = 0;
        for (long[] c : control) {
            SlotLock.lock(c, LOCK);
            n += c[field];
            SlotLock.unlock(c, LOCK);
        }
        return n;
    }

    private static void insert(long[] t, long key, long value, long hash) {
        int mask = t.length / 2 - 1;
        int i = (int) hash & mask;
        while (t[2 * i] != 0) {
            if (t[2 * i] == key) {
                throw new IllegalStateException("pfn 0x" + Long.toHexString(key) + " is already live");
            }
            i = (i + 1) & mask;
        }
        t[2 * i] = key;
        t[2 * i + 1] = value;
    }

    private static long removeIfSize(long[] t, long key, long size, long hash) {
        int mask = t.length / 2 - 1;
        int i = (int) hash & mask;
        while (t[2 * i] != key) {
            if (t[2 * i] == 0) {
                return ABSENT;
            }
            i = (i + 1) & mask;
        }
        long value = t[2 * i + 1];
        if (value != size) {
            return value;
        }
        // backward-shift deletion keeps every probe chain unbroken without tombstones
        int hole = i;
        int j = (i + 1) & mask;
        while (t[2 * j] != 0) {
            int home = (int) mix(t[2 * j]) & mask;
            boolean movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
            if (movable) {
                t[2 * hole] = t[2 * j];
                t[2 * hole + 1] = t[2 * j + 1];
                hole = j;
            }
            j = (j + 1) & mask;
        }
        t[2 * hole] = 0;
        t[2 * hole + 1] = 0;
        return value;
    }

    private static long[] grown(long[] old) {
        long[] t = new long[old.length * 2];
        for (int i = 0; i < old.length; i += 2) {
            if (old[i] != 0) {
                insert(t, old[i], old[i + 1], mix(old[i]));
            }
        }
        return t;
    }
}
