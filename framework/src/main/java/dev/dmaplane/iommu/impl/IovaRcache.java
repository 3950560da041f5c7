package dev.dmaplane.iommu.impl;

/**
 * The IOVA range caches of {@code drivers/iommu/iova.c}: for each small power-of-two size, every CPU keeps a
 * {@code loaded} and a {@code prev} magazine of recently freed frames, backed by a bounded depot of full magazines
 * shared by all CPUs. Java has no current-CPU number, so "CPU" here is a slot picked from the calling thread's id;
 * each slot has its own monitor, and the depot of each size class has another.
 *
 * <p>Cached frames stay out of the free tree. The owner returns them to it with {@link #drainAll} when the tree runs
 * dry, as {@code alloc_iova_fast} flushes the caches and retries before failing.
 */
public final class IovaRcache {
    /** Number of cached size classes, orders 0 .. 5 frames ({@code IOVA_RANGE_CACHE_MAX_SIZE}). */
    public static final int ORDERS = 6;
    /** Full magazines the depot of one size class may hold ({@code MAX_GLOBAL_MAGS}). */
    static final int DEPOT_MAGAZINES = 32;

    private final CpuSlot[] slots;
    private final int slotMask;
    private final Depot[] depots = new Depot[ORDERS];

    public IovaRcache() {
        int n = Integer.highestOneBit(Math.max(1, Runtime.getRuntime().availableProcessors()) * 4 - 1) << 1;
        slots = new CpuSlot[n];
        slotMask = n - 1;
        for (int i = 0; i < n; i++) {
            slots[i] = new CpuSlot();
        }
        for (int i = 0; i < ORDERS; i++) {
            depots[i] = new Depot();
        }
    }

    private CpuSlot slot() {
        return slots[(int) Thread.currentThread().threadId() & slotMask];
    }

    /**
     * Takes a cached frame of size class {@code order} that is at most {@code maxPfn} ({@code iova_rcache_get}).
     *
     * @return the frame, or {@code 0} on a miss
     */
    public long get(int order, long maxPfn) {
        CpuSlot s = slot();
        synchronized (s) {
            IovaMagazine loaded = s.loaded[order];
            if (loaded == null || loaded.isEmpty()) {
                IovaMagazine prev = s.prev[order];
                if (prev != null && !prev.isEmpty()) {
                    s.prev[order] = loaded;
                    loaded = prev;
                } else {
                    loaded = depots[order].take();
                    if (loaded == null) {
                        return 0;
                    }
                }
                s.loaded[order] = loaded;
            }
            return loaded.popAtMost(maxPfn);
        }
    }

    /**
     * Caches a freed frame of size class {@code order} ({@code iova_rcache_insert}). When the CPU slot and the depot
     * are full, a whole magazine is evicted to {@code overflow}, which must hand each frame back to the free tree.
     */
    public void put(int order, long pfn, FrameSink overflow) {
        IovaMagazine evicted = null;
        CpuSlot s = slot();
        synchronized (s) {
            IovaMagazine loaded = s.loaded[order];
            if (loaded == null) {
                loaded = new IovaMagazine();
                s.loaded[order] = loaded;
            } else if (loaded.isFull()) {
                IovaMagazine prev = s.prev[order];
                if (prev == null || !prev.isFull()) {
                    s.prev[order] = loaded;
                    loaded = prev == null ? new IovaMagazine() : prev;
                } else {
                    if (!depots[order].offer(loaded)) {
                        evicted = loaded;
                    }
                    loaded = new IovaMagazine();
                }
                s.loaded[order] = loaded;
            }
            loaded.push(pfn);
        }
        if (evicted != null) {
            evicted.drainTo(overflow, 1L << order);
        }
    }

    /**
     * Empties every slot and depot of every size class into {@code sink}, as {@code free_cpu_cached_iovas} and
     * {@code free_global_cached_iovas} do before an allocation is allowed to fail.
     */
    public void drainAll(FrameSink sink) {
        for (int order = 0; order < ORDERS; order++) {
            for (CpuSlot s : slots) {
                synchronized (s) {
                    if (s.loaded[order] != null) {
                        s.loaded[order].drainTo(sink, 1L << order);
                    }
                    if (s.prev[order] != null) {
                        s.prev[order].drainTo(sink, 1L << order);
                    }
                }
            }
            IovaMagazine m;
            while ((m = depots[order].take()) != null) {
                m.drainTo(sink, 1L << order);
            }
        }
    }

    /** Receives cached frames going back to the free tree. */
    @FunctionalInterface
    public interface FrameSink {
        void release(long pfn, long frames);
    }

    /**
     * One "CPU" of the cache; its magazines are created on first use so idle slots cost nothing. The slots are
     * allocated together, so unused fields push each slot's monitor onto its own 128-byte span: two threads locking
     * neighbouring slots must not bounce one cache line between cores.
     */
    @SuppressWarnings("unused")
    private static final class CpuSlot {
        final IovaMagazine[] loaded = new IovaMagazine[ORDERS];
        final IovaMagazine[] prev = new IovaMagazine[ORDERS];
        long pad0, pad1, pad2, pad3, pad4, pad5, pad6, pad7, pad8, pad9, pad10, pad11, pad12, pad13;
    }

    private static final class Depot {
        private final IovaMagazine[] full = new IovaMagazine[DEPOT_MAGAZINES];
        private int size;

        synchronized IovaMagazine take() {
            if (size == 0) {
                return null;
            }
            IovaMagazine m = full[--size];
            full[size] = null;
            return m;
        }

        synchronized boolean offer(IovaMagazine m) {
            if (size == DEPOT_MAGAZINES) {
                return false;
            }
            full[size++] = m;
            return true;
        }
    }
}
