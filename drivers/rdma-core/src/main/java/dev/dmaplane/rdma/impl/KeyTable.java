package dev.dmaplane.rdma.impl;

import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * The device's memory keys, as rdma_rxe makes them: {@code key = index << 8 | 8-bit key}. Regions take indices
 * from {@code 0x1..0x10000}, windows from {@code 0x10001..0x20000}, so the index of an rkey tells which kind it
 * names ({@code rkey_is_mw}). Each new key of an index gets a random 8-bit part different from the last one that
 * index had ({@code rxe_get_next_key}), so a key that was deregistered, re-registered or rebound never matches
 * again by accident.
 */
final class KeyTable {
    static final int MR_MIN = 0x1;
    static final int MR_MAX = 0x10000;
    static final int MW_MIN = 0x10001;
    static final int MW_MAX = 0x20000;

    private final IndexPool mrIndices = new IndexPool(MR_MIN, MR_MAX);
    private final IndexPool mwIndices = new IndexPool(MW_MIN, MW_MAX);
    /** The published object of every index, for key lookups on the data path (an array read, no hashing or boxing). */
    private final AtomicReferenceArray<Object> published =
            new AtomicReferenceArray<>(MW_MAX + 1);
    /** The same, as a map, for listing the windows. */
    private final ConcurrentHashMap<Integer, Object> byIndex = new ConcurrentHashMap<>();
    private final int[] lastKey = new int[MW_MAX + 1];

    KeyTable() {
        Arrays.fill(lastKey, -1);
    }

    static boolean isMwKey(int key) {
        int index = key >>> 8;
        return index >= MW_MIN && index <= MW_MAX;
    }

    /** Takes a region index, not yet visible to lookups; -1 when none is free. */
    int allocMrIndex() {
        return mrIndices.alloc();
    }

    /** Takes a window index, not yet visible to lookups; -1 when none is free. */
    int allocMwIndex() {
        return mwIndices.alloc();
    }

    /** Makes the object behind {@code index} visible to key lookups. */
    void publish(int index, Object owner) {
        byIndex.put(index, owner);
        published.set(index, owner);
    }

    /** Hides the object behind {@code index} from lookups; the index stays taken until {@link #free}. */
    void unpublish(int index) {
        published.set(index, null);
        byIndex.remove(index);
    }

    /** A fresh key for {@code index}: its 8-bit part differs from the previous key of the index. */
    synchronized int nextKey(int index) {
        int k;
        do {
            k = ThreadLocalRandom.current().nextInt(256);
        } while (k == lastKey[index]);
        lastKey[index] = k;
        return index << 8 | k;
    }

    void free(int index) {
        published.set(index, null);
        byIndex.remove(index);
        if (index >= MW_MIN) {
            mwIndices.free(index);
        } else {
            mrIndices.free(index);
        }
    }

    /** The region whose index is in {@code key}, whatever its 8-bit part. */
    MrImpl mr(int key) {
        return owner(key) instanceof MrImpl m ? m : null;
    }

    MwImpl mw(int key) {
        return owner(key) instanceof MwImpl w ? w : null;
    }

    private Object owner(int key) {
        int index = key >>> 8;
        return index <= MW_MAX ? published.get(index) : null;
    }

    /** Windows in use (for unbinding on QP or region destruction). */
    List<MwImpl> windows() {
        return byIndex.values().stream().filter(o -> o instanceof MwImpl).map(o -> (MwImpl) o).toList();
    }
}
