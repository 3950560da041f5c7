package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.DmaLease;

import java.util.function.Supplier;

/**
 * The leases one message's buffers are read through during a pass of the transmit engine, one per SGE (or one for
 * a Read Response's source): a lease of the whole buffer, checked and translated once ({@code siw_check_sgl_tx}
 * checks each SGE once per request), serves every FPDU of the pass when it is {@link DmaLease#stable stable};
 * one that is not (an on-demand or dma-buf region, a window) serves its first FPDU and is closed, and the buffer
 * is leased per FPDU from then on. Closed when the message ends and when the pass ends, on the thread that took
 * them, so no lease outlives a pass.
 */
final class SgeLeases implements AutoCloseable {
    private final DmaLease[] held;
    private final boolean[] unstable;

    SgeLeases(int n) {
        held = new DmaLease[n];
        unstable = new boolean[n];
    }

    /**
     * Buffer {@code i}'s lease: the one held, or a new one from {@code whole}, kept if stable; null when the buffer
     * is leased per FPDU. Close what this returns only when {@link #held} says it is not kept.
     */
    DmaLease take(int i, Supplier<DmaLease> whole) {
        DmaLease l = held[i];
        if (l != null || unstable[i]) {
            return l;
        }
        l = whole.get();
        if (l.stable()) {
            held[i] = l;
        } else {
            unstable[i] = true;
        }
        return l;
    }

    /** Whether buffer {@code i} was leased whole in this pass (kept, or found not stable). */
    boolean tried(int i) {
        return held[i] != null || unstable[i];
    }

    /** Whether buffer {@code i}'s lease is kept for the rest of the pass. */
    boolean held(int i) {
        return held[i] != null;
    }

    /** Ends the pass: every kept lease closed (the next pass takes new ones). */
    @Override
    public void close() {
        for (int i = 0; i < held.length; i++) {
            DmaLease l = held[i];
            if (l != null) {
                held[i] = null;
                l.close();
            }
        }
    }
}
