package dev.dmaplane.mm.impl;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.function.LongConsumer;
import java.util.function.LongPredicate;

/**
 * A two-level page table keyed by virtual page number: a hash map of leaf tables of 512 entries, as a last-level
 * page table covers 2 MiB. Lookups and updates cost O(1), so walking a range costs time linear in its pages.
 * Not thread-safe: the address space's page-table lock ({@code ptl}) guards it.
 */
final class PageTable {
    private static final int LEAF_SHIFT = 9;
    private static final int LEAF_SIZE = 1 << LEAF_SHIFT;
    private static final int LEAF_MASK = LEAF_SIZE - 1;

    private static final class Leaf {
        final long[] ptes = new long[LEAF_SIZE];
        int used;
    }

    private final HashMap<Long, Leaf> leaves = new HashMap<>();
    private long cachedKey = -1;
    private Leaf cachedLeaf;
    private long present;
    /** Present entries that are {@link Pte#isSpecial special}: BAR pages, no part of the resident set. */
    private long special;

    private Leaf leaf(long key, boolean create) {
        if (key == cachedKey) {
            return cachedLeaf;
        }
        Leaf l = leaves.get(key);
        if (l == null && create) {
            l = new Leaf();
            leaves.put(key, l);
        }
        if (l != null) {
            cachedKey = key;
            cachedLeaf = l;
        }
        return l;
    }

    long get(long vpn) {
        Leaf l = leaf(vpn >>> LEAF_SHIFT, false);
        return l == null ? Pte.NONE : l.ptes[(int) (vpn & LEAF_MASK)];
    }

    /** Sets a present entry; returns the old one. */
    long set(long vpn, long pte) {
        Leaf l = leaf(vpn >>> LEAF_SHIFT, true);
        int i = (int) (vpn & LEAF_MASK);
        long old = l.ptes[i];
        l.ptes[i] = pte;
        if (old == Pte.NONE) {
            l.used++;
            present++;
        }
        special += (Pte.isSpecial(pte) ? 1 : 0) - (old != Pte.NONE && Pte.isSpecial(old) ? 1 : 0);
        return old;
    }

    /**
     * Clears the present entries in {@code [vpnStart, vpnEnd)} that {@code filter} accepts, handing each old entry
     * to {@code cleared}; empty leaves are freed.
     */
    void clearRange(long vpnStart, long vpnEnd, LongPredicate filter, LongConsumer cleared) {
        if (vpnEnd <= vpnStart) {
            return;
        }
        long firstKey = vpnStart >>> LEAF_SHIFT;
        long lastKey = (vpnEnd - 1) >>> LEAF_SHIFT;
        List<Long> keys;
        if (lastKey - firstKey < leaves.size()) {
            keys = new ArrayList<>();
            for (long k = firstKey; k <= lastKey; k++) {
                keys.add(k);
            }
        } else {
            keys = new ArrayList<>();
            for (long k : leaves.keySet()) {
                if (k >= firstKey && k <= lastKey) {
                    keys.add(k);
                }
            }
        }
        for (long key : keys) {
            Leaf l = leaves.get(key);
            if (l == null) {
                continue;
            }
            long base = key << LEAF_SHIFT;
            int from = (int) (Math.max(vpnStart, base) - base);
            int to = (int) (Math.min(vpnEnd, base + LEAF_SIZE) - base);
            for (int i = from; i < to && l.used > 0; i++) {
                long pte = l.ptes[i];
                if (pte != Pte.NONE && filter.test(pte)) {
                    l.ptes[i] = Pte.NONE;
                    l.used--;
                    present--;
                    if (Pte.isSpecial(pte)) {
                        special--;
                    }
                    cleared.accept(pte);
                }
            }
            if (l.used == 0) {
                leaves.remove(key);
                if (cachedKey == key) {
                    cachedKey = -1;
                    cachedLeaf = null;
                }
            }
        }
    }

    /** Present entries of frames of host memory: the resident set size in pages (special entries left out). */
    long present() {
        return present - special;
    }
}
