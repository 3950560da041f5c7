package dev.dmaplane.rdma.verbs;

/** Atomic capability of a device ({@code enum ib_atomic_cap}). */
public enum AtomicCap {
    /** No atomics. */
    NONE(0),
    /** Atomic among QPs of this HCA only. */
    HCA(1),
    /** Atomic with respect to every agent, CPU included. */
    GLOB(2);

    private final int value;

    AtomicCap(int value) {
        this.value = value;
    }

    public int value() {
        return value;
    }
}
