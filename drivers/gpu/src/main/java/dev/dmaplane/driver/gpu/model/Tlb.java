package dev.dmaplane.driver.gpu.model;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One engine's translation cache (a GPU's per-engine L1 TLB, flushed as amdgpu's {@code gmc_flush_gpu_tlb} asks):
 * GPU page to physical page, least recently used out first, dropped per VM or all at once.
 */
final class Tlb {
    /**
     * A cached translation: the aperture-tagged physical base of its leaf, whether it may be written, and the leaf's
     * size ({@link GpuRegs#PAGE_SIZE}, or {@link GpuRegs#HUGE_PAGE_SIZE} for a 2 MiB entry, cached once for all of
     * its pages as a GPU's TLB caches a fragment).
     */
    record Translation(long physPage, boolean writable, long size) {
        /** The aperture-tagged physical address of {@code va}, inside this leaf. */
        long phys(long va) {
            return physPage + (va & (size - 1));
        }

        /** Bytes from {@code va} to the end of this leaf. */
        long remaining(long va) {
            return size - (va & (size - 1));
        }
    }

    static final int CAPACITY = 256;

    private final Map<Long, Translation> entries = new LinkedHashMap<>(CAPACITY, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<Long, Translation> eldest) {
            return size() > CAPACITY;
        }
    };
    private long hits;
    private long misses;

    private static long key(int vm, long va) {
        return ((long) vm << 56) | (va >>> GpuRegs.PAGE_SHIFT);
    }

    /** The key of a 2 MiB entry: bit 55 set, so it never equals a page's. */
    private static long hugeKey(int vm, long va) {
        return ((long) vm << 56) | (1L << 55) | (va >>> 21);
    }

    /** The entry covering {@code va}: its page's, else its 2 MiB leaf's. */
    synchronized Translation lookup(int vm, long va) {
        Translation e = entries.get(key(vm, va));
        if (e == null) {
            e = entries.get(hugeKey(vm, va));
        }
        if (e == null) {
            misses++;
        } else {
            hits++;
        }
        return e;
    }

    synchronized void fill(int vm, long va, Translation e) {
        entries.put(e.size() == GpuRegs.HUGE_PAGE_SIZE ? hugeKey(vm, va) : key(vm, va), e);
    }

    synchronized void invalidate(int vm) {
        entries.keySet().removeIf(k -> (int) (k >>> 56) == vm);
    }

    synchronized void invalidateAll() {
        entries.clear();
    }

    synchronized int size() {
        return entries.size();
    }

    synchronized long hits() {
        return hits;
    }

    synchronized long misses() {
        return misses;
    }

    synchronized void resetCounters() {
        hits = misses = 0;
    }
}
