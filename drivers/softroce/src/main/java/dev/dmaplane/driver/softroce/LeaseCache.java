package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.spi.DmaLease;

/**
 * One stable lease ({@link DmaLease#stable()}) kept open for the rest of an engine pass's round, so that the next
 * access with the same owner (QP or PD), key and access kind inside its range uses it again instead of taking the
 * region's lock and translating once more: what an HCA's memory translation table cache does for repeated
 * accesses. The engine clears it at the end of every round of its pass and before anything that may change what
 * granted it (binding or invalidating a window). Used by the thread running the engine only.
 */
final class LeaseCache {
    private DmaLease lease;
    private Object owner;
    private int key;
    private int access;
    private long start;
    private long end;

    /** A lease for {@code [addr, addr + len)}, and where {@code addr} is in it; closing it closes only what was not kept. */
    record Held(DmaLease lease, long offset, boolean owned) implements AutoCloseable {
        @Override
        public void close() {
            if (owned) {
                lease.close();
            }
        }
    }

    /** The kept lease if it covers the access, else null. */
    Held find(Object owner, int key, int access, long addr, long len) {
        DmaLease l = lease;
        if (l == null || this.owner != owner || this.key != key || this.access != access || len <= 0
                || Long.compareUnsigned(addr, start) < 0 || Long.compareUnsigned(addr + len, end) > 0
                || Long.compareUnsigned(addr + len, addr) < 0) {
            return null;
        }
        return new Held(l, addr - start, false);
    }

    /** Keeps {@code l}, taken for {@code [addr, addr + len)}, if it is stable (closing the one kept before). */
    Held keep(DmaLease l, Object owner, int key, int access, long addr, long len) {
        if (!l.stable() || len <= 0) {
            return new Held(l, 0, true);
        }
        clear();
        this.lease = l;
        this.owner = owner;
        this.key = key;
        this.access = access;
        this.start = addr;
        this.end = addr + len;
        return new Held(l, 0, false);
    }

    /** Closes the kept lease. */
    void clear() {
        DmaLease l = lease;
        if (l != null) {
            lease = null;
            owner = null;
            l.close();
        }
    }
}
