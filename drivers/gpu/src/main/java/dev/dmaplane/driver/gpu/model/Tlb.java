package dev.dmaplane.driver.gpu.model;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One engine's translation cache (a GPU's per-engine L1 TLB, flushed as amdgpu's {@code gmc_flush_gpu_tlb} asks):
 * GPU page to physical page, least recently used out first, dropped per VM or all at once.
 */
final class Tlb {
    /** A cached translation: the aperture-tagged physical page and whether it may be written. */
    record Translation(long physPage, boolean writable) {
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

    synchronized Translation lookup(int vm, long va) {
        Translation e = entries.get(key(vm, va));
        if (e == null) {
            misses++;
        } else {
            hits++;
        }
        return e;
    }

    synchronized void fill(int vm, long va, Translation e) {
        entries.put(key(vm, va), e);
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
