package dev.dmaplane.iommu.impl;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * The IOVA range caches of {@code drivers/iommu/iova.c}: for each small power-of-two size, every CPU keeps a
 * {@code loaded} and a {@code prev} magazine of recently freed frames, backed by a bounded depot of full magazines
 * shared by all CPUs. Java has no current-CPU number, so "CPU" here is a slot picked from the calling thread's id.
 *
 * <p>Each slot is one padded {@code long[]} holding its lock word, the fill of its twelve magazines, which of each
 * pair is loaded, and the magazines' frames; it is created by the first thread that uses it. Nothing a slot's thread
 * writes shares a cache line with anything another thread touches, so threads on different slots scale. Depot
 * exchanges copy a magazine's 128 frames in or out instead of swapping pointers; that happens at most once per
 * 128 operations of a size class.
 *
 * <p>Cached frames stay out of the free tree. The owner returns them to it with {@link #drainAll} when the tree runs
 * dry, as {@code alloc_iova_fast} flushes the caches and retries before failing.
 */
public final class IovaRcache {
    /** Number of cached size classes, orders 0 .. 5 frames ({@code IOVA_RANGE_CACHE_MAX_SIZE}). */
    public static final int ORDERS = 6;
    /** Frames per magazine ({@code IOVA_MAG_SIZE}). */
    static final int MAG = 128;
    /** Full magazines the depot of one size class may hold ({@code MAX_GLOBAL_MAGS}). */
    static final int DEPOT_MAGAZINES = 32;

    // layout of a slot array
    private static final int LOCK = SlotLock.PAD;
    private static final int FILL = LOCK + 1; // FILL + 2*order + m: frames in magazine m of order
    private static final int LOADED = FILL + 2 * ORDERS; // LOADED + order: which magazine (0/1) is loaded
    private static final int DATA = LOADED + ORDERS; // magazine (order, m) starts at DATA + (2*order+m)*MAG
    private static final int SLOT_LONGS = DATA + 2 * ORDERS * MAG + SlotLock.PAD;

    private static final VarHandle SLOTS = MethodHandles.arrayElementVarHandle(long[][].class);

    private final long[][] slots;
    private final int slotMask;
    private final Depot[] depots = new Depot[ORDERS];

    public IovaRcache() {
        int n = Integer.highestOneBit(Math.max(1, Runtime.getRuntime().availableProcessors()) * 4 - 1) << 1;
        slots = new long[n][];
        slotMask = n - 1;
        for (int i = 0; i < ORDERS; i++) {
            depots[i] = new Depot();
        }
    }

    private long[] slot() {
        int i = (int) Thread.currentThread().threadId() & slotMask;
        long[] s = (long[]) SLOTS.getAcquire(slots, i);
        if (s == null) {
            long[] fresh = new long[SLOT_LONGS];
            s = (long[]) SLOTS.compareAndExchangeRelease(slots, i, (long[]) null, fresh);
            if (s == null) {
                s = fresh;
            }
        }
        return s;
    }

    private static int data(int order, int m) {
        return DATA + (2 * order + m) * MAG;
    }

    /**
     * Takes a cached frame of size class {@code order} that is at most {@code maxPfn} ({@code iova_rcache_get}),
     * searching the loaded magazine down from its top (at most {@link #MAG} entries).
     *
     * @return the frame, or {@code 0} on a miss
     */
    public long get(int order, long maxPfn) {
        long[] s = slot();
        SlotLock.lock(s, LOCK);
        try {
            int m = (int) s[LOADED + order];
            int fill = (int) s[FILL + 2 * order + m];
            if (fill == 0) {
                int other = m ^ 1;
                if (s[FILL + 2 * order + other] != 0) {
                    m = other;
                    s[LOADED + order] = m;
                } else if (!depots[order].takeInto(s, data(order, m))) {
                    return 0;
                } else {
                    s[FILL + 2 * order + m] = MAG;
                }
                fill = (int) s[FILL + 2 * order + m];
            }
            int base = data(order, m);
            int i = fill - 1;
            while (i >= 0 && s[base + i] > maxPfn) {
                i--;
            }
            if (i < 0) {
                return 0;
            }
            long pfn = s[base + i];
            s[base + i] = s[base + fill - 1];
            s[FILL + 2 * order + m] = fill - 1;
            return pfn;
        } finally {
            SlotLock.unlock(s, LOCK);
        }
    }

    /**
     * Caches a freed frame of size class {@code order} ({@code iova_rcache_insert}). When both magazines of the slot
     * are full, the loaded one goes to the depot; when the depot is full too, its frames are evicted to
     * {@code overflow}, which must hand each back to the free tree.
     */
    public void put(int order, long pfn, FrameSink overflow) {
        long[] evicted = null;
        long[] s = slot();
        SlotLock.lock(s, LOCK);
        try {
            int m = (int) s[LOADED + order];
            if (s[FILL + 2 * order + m] == MAG) {
                int other = m ^ 1;
                if (s[FILL + 2 * order + other] < MAG) {
                    m = other;
                    s[LOADED + order] = m;
                } else {
                    if (!depots[order].offerFrom(s, data(order, m))) {
                        evicted = new long[MAG];
                        System.arraycopy(s, data(order, m), evicted, 0, MAG);
                    }
                    s[FILL + 2 * order + m] = 0;
                }
            }
            int fill = (int) s[FILL + 2 * order + m];
            s[data(order, m) + fill] = pfn;
            s[FILL + 2 * order + m] = fill + 1;
        } finally {
            SlotLock.unlock(s, LOCK);
        }
        if (evicted != null) {
            for (long e : evicted) {
                overflow.release(e, 1L << order);
            }
        }
    }

    /**
     * Empties every slot and depot of every size class into {@code sink}, as {@code free_cpu_cached_iovas} and
     * {@code free_global_cached_iovas} do before an allocation is allowed to fail.
     */
    public void drainAll(FrameSink sink) {
        for (int i = 0; i < slots.length; i++) {
            long[] s = (long[]) SLOTS.getAcquire(slots, i);
            if (s == null) {
                continue;
            }
            SlotLock.lock(s, LOCK);
            try {
                for (int order = 0; order < ORDERS; order++) {
                    for (int m = 0; m < 2; m++) {
                        int fill = (int) s[FILL + 2 * order + m];
                        for (int j = 0; j < fill; j++) {
                            sink.release(s[data(order, m) + j], 1L << order);
                        }
                        s[FILL + 2 * order + m] = 0;
                    }
                }
            } finally {
                SlotLock.unlock(s, LOCK);
            }
        }
        for (int order = 0; order < ORDERS; order++) {
            depots[order].drain(sink, 1L << order);
        }
    }

    /** Receives cached frames going back to the free tree. */
    @FunctionalInterface
    public interface FrameSink {
        void release(long pfn, long frames);
    }

    /** The shared store of full magazines of one size class ({@code iova_rcache->depot}). */
    private static final class Depot {
        private final long[][] full = new long[DEPOT_MAGAZINES][];
        private int size;

        /** Copies the newest full magazine into {@code dst} at {@code at}; false when the depot is empty. */
        synchronized boolean takeInto(long[] dst, int at) {
            if (size == 0) {
                return false;
            }
            long[] mag = full[--size];
            full[size] = null;
            System.arraycopy(mag, 0, dst, at, MAG);
            return true;
        }

        /** Stores a copy of the full magazine at {@code src[at]}; false when the depot is full. */
        synchronized boolean offerFrom(long[] src, int at) {
            if (size == DEPOT_MAGAZINES) {
                return false;
            }
            long[] mag = new long[MAG];
            System.arraycopy(src, at, mag, 0, MAG);
            full[size++] = mag;
            return true;
        }

        synchronized void drain(FrameSink sink, long frames) {
            for (int i = 0; i < size; i++) {
                for (long pfn : full[i]) {
                    sink.release(pfn, frames);
                }
                full[i] = null;
            }
            size = 0;
        }
    }
}
