package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.spi.DmaLease;

/**
 * Stable leases ({@link DmaLease#stable()}) kept open for the rest of an engine pass's round, so that the next
 * access with the same owner (QP or PD), key and access kind inside a kept range uses it again instead of taking
 * the region's lock and translating once more: what an HCA's memory translation table cache does for repeated
 * accesses. Up to {@code capacity} leases; the engine clears them at the end of every round of its pass and before
 * anything that may change what granted them (binding or invalidating a window). Used by the thread running the
 * engine only.
 */
final class LeaseCache {
    private final DmaLease[] leases;
    private final Object[] owners;
    private final int[] keys;
    private final int[] accesses;
    private final long[] starts;
    private final long[] ends;
    private int size;

    LeaseCache(int capacity) {
        leases = new DmaLease[capacity];
        owners = new Object[capacity];
        keys = new int[capacity];
        accesses = new int[capacity];
        starts = new long[capacity];
        ends = new long[capacity];
    }

    /** A lease for {@code [addr, addr + len)}, and where {@code addr} is in it; closing it closes only what was not kept. */
    record Held(DmaLease lease, long offset, boolean owned) implements AutoCloseable {
        @Override
        public void close() {
            if (owned) {
                lease.close();
            }
        }
    }

    /**
     * Whether {@code [addr, addr + len)} lies in {@code [start, end)}: a non-empty access, compared unsigned as
     * rxe's {@code mr_check_range} compares, its end not wrapping past 2^64.
     */
    static boolean covers(long start, long end, long addr, long len) {
        return len > 0 && Long.compareUnsigned(addr + len, addr) > 0
                && Long.compareUnsigned(addr, start) >= 0 && Long.compareUnsigned(addr + len, end) <= 0;
    }

    /** A kept lease covering the access, else null; the latest kept is looked at first. */
    Held find(Object owner, int key, int access, long addr, long len) {
        for (int i = size - 1; i >= 0; i--) {
            if (owners[i] == owner && keys[i] == key && accesses[i] == access && covers(starts[i], ends[i], addr, len)) {
                return new Held(leases[i], addr - starts[i], false);
            }
        }
        return null;
    }

    /** Whether keeping one more lease would close the kept ones first. */
    boolean full() {
        return size == leases.length;
    }

    /** Keeps {@code l}, taken for {@code [addr, addr + len)}, if it is stable (closing all kept when full). */
    Held keep(DmaLease l, Object owner, int key, int access, long addr, long len) {
        if (!l.stable() || len <= 0) {
            return new Held(l, 0, true);
        }
        if (full()) {
            clear();
        }
        leases[size] = l;
        owners[size] = owner;
        keys[size] = key;
        accesses[size] = access;
        starts[size] = addr;
        ends[size] = addr + len;
        size++;
        return new Held(l, 0, false);
    }

    /** Closes the kept leases, latest first. */
    void clear() {
        while (size > 0) {
            size--;
            DmaLease l = leases[size];
            leases[size] = null;
            owners[size] = null;
            l.close();
        }
    }
}
