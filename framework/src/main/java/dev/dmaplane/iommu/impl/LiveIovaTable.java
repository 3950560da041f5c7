package dev.dmaplane.iommu.impl;

/**
 * The set of IOVAs currently handed out, with the exact size each was allocated with, so that a free can be checked
 * against a live allocation (the kernel trusts its callers; dmaplane reports a bad or double free as {@code EINVAL}).
 *
 * <p>Striped by a hash of the frame number: each stripe is an open-addressing long-to-long table with linear probing
 * and backward-shift deletion, guarded by its own monitor, so threads freeing unrelated IOVAs rarely meet. Every
 * operation is O(1) expected. Frame 0 marks an empty slot, which is why an allocator never hands out IOVA 0.
 */
public final class LiveIovaTable {
    /** {@link #remove} result: no live allocation starts at that frame. */
    public static final long ABSENT = -1;

    private static final int STRIPES = 64;
    private static final long GOLDEN = 0x9E3779B97F4A7C15L;

    private final Stripe[] stripes = new Stripe[STRIPES];

    public LiveIovaTable() {
        for (int i = 0; i < STRIPES; i++) {
            stripes[i] = new Stripe();
        }
    }

    private static long mix(long pfn) {
        long h = pfn * GOLDEN;
        return h ^ (h >>> 29);
    }

    private Stripe stripe(long mixed) {
        return stripes[(int) (mixed >>> 58)];
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
        Stripe s = stripe(h);
        synchronized (s) {
            s.put(pfn, size, h);
            s.count++;
            s.bytes += grantedBytes;
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
        Stripe s = stripe(h);
        synchronized (s) {
            long found = s.removeIfSize(pfn, size, h);
            if (found == size) {
                s.count--;
                s.bytes -= grantedBytes;
            }
            return found;
        }
    }

    /** Number of live allocations; exact when no allocation or free runs at the same time. */
    public long count() {
        long n = 0;
        for (Stripe s : stripes) {
            synchronized (s) {
                n += s.count;
            }
        }
        return n;
    }

    /** IOVA bytes held by live allocations; exact when no allocation or free runs at the same time. */
    public long bytes() {
        long n = 0;
        for (Stripe s : stripes) {
            synchronized (s) {
                n += s.bytes;
            }
        }
        return n;
    }

    /** One lock domain; padded like the cache slots so neighbouring stripes' monitors do not share a cache line. */
    @SuppressWarnings("unused")
    private static final class Stripe {
        long[] keys = new long[16];
        long[] values = new long[16];
        int used;
        long count;
        long bytes;
        long pad0, pad1, pad2, pad3, pad4, pad5, pad6, pad7, pad8, pad9, pad10, pad11;

        void put(long key, long value, long hash) {
            if ((used + 1) * 2 > keys.length) {
                grow();
            }
            int mask = keys.length - 1;
            int i = (int) hash & mask;
            while (keys[i] != 0) {
                if (keys[i] == key) {
                    throw new IllegalStateException("pfn 0x" + Long.toHexString(key) + " is already live");
                }
                i = (i + 1) & mask;
            }
            keys[i] = key;
            values[i] = value;
            used++;
        }

        long removeIfSize(long key, long size, long hash) {
            int mask = keys.length - 1;
            int i = (int) hash & mask;
            while (keys[i] != key) {
                if (keys[i] == 0) {
                    return ABSENT;
                }
                i = (i + 1) & mask;
            }
            long value = values[i];
            if (value != size) {
                return value;
            }
            // backward-shift deletion keeps every probe chain unbroken without tombstones
            int hole = i;
            int j = (i + 1) & mask;
            while (keys[j] != 0) {
                int home = (int) mix(keys[j]) & mask;
                boolean movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
                if (movable) {
                    keys[hole] = keys[j];
                    values[hole] = values[j];
                    hole = j;
                }
                j = (j + 1) & mask;
            }
            keys[hole] = 0;
            values[hole] = 0;
            used--;
            return value;
        }

        private void grow() {
            long[] oldKeys = keys;
            long[] oldValues = values;
            keys = new long[oldKeys.length * 2];
            values = new long[oldKeys.length * 2];
            used = 0;
            for (int i = 0; i < oldKeys.length; i++) {
                if (oldKeys[i] != 0) {
                    put(oldKeys[i], oldValues[i], mix(oldKeys[i]));
                }
            }
        }
    }
}
