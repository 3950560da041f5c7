package dev.dmaplane.mm.impl;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The VMAs of an address space ordered by start address (the kernel's maple tree): non-overlapping, looked up in
 * O(log n). Not thread-safe: {@code mmap_lock} guards it.
 */
final class VmaTree {
    private final TreeMap<Long, Region> byStart = new TreeMap<>();

    /** {@code vma_lookup}: the region containing {@code addr}, or null. */
    Region find(long addr) {
        Map.Entry<Long, Region> e = byStart.floorEntry(addr);
        return e != null && addr < e.getValue().end ? e.getValue() : null;
    }

    /** The regions sharing a byte with {@code [start, end)}, in address order. */
    List<Region> overlapping(long start, long end) {
        Region first = find(start);
        if (first != null && end <= first.end) {
            return List.of(first); // the common case, every load and store of a few bytes: no tree walk, no list copy
        }
        List<Region> out = new ArrayList<>();
        if (first != null) {
            out.add(first);
        }
        // a region starting exactly at start is the one find returned
        out.addAll(byStart.subMap(start, false, end, false).values());
        return out;
    }

    /**
     * The first address in {@code [start, end)} that no region maps, or -1 when the regions cover it all;
     * {@code regions} must be {@link #overlapping}'s answer for the same range.
     */
    static long firstHole(List<Region> regions, long start, long end) {
        long at = start;
        for (Region r : regions) {
            if (r.start > at) {
                return at;
            }
            at = Math.max(at, r.end);
        }
        return at < end ? at : -1;
    }

    void insert(Region r) {
        byStart.put(r.start, r);
    }

    void remove(Region r) {
        byStart.remove(r.start, r);
    }

    /**
     * Top-down search for {@code len} free bytes between {@code floor} and {@code ceiling}
     * ({@code arch_get_unmapped_area_topdown}).
     *
     * @return the start of the highest fitting gap, or -1
     */
    long findGapTopDown(long len, long floor, long ceiling) {
        long gapEnd = ceiling;
        for (Region r : byStart.descendingMap().values()) {
            if (r.start >= gapEnd) {
                continue;
            }
            if (r.end <= gapEnd && gapEnd - r.end >= len) {
                return gapEnd - len;
            }
            gapEnd = Math.min(gapEnd, r.start);
            if (gapEnd - floor < len) {
                return -1;
            }
        }
        return gapEnd - floor >= len ? gapEnd - len : -1;
    }

    List<Region> all() {
        return new ArrayList<>(byStart.values());
    }

    void clear() {
        byStart.clear();
    }
}
