package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;

import java.lang.foreign.MemorySegment;
import java.util.function.LongFunction;
import java.util.function.LongSupplier;
import java.util.function.Supplier;

/**
 * The leases one message's buffers are reached through, one per SGE (or one for a tagged message's STag), as
 * {@code siw_check_sge} resolves an SGE's memory on a message's first segment and keeps it in
 * {@code wqe->mem[i]} for the rest. The send side leases each SGE whole for a pass of the transmit engine
 * ({@code siw_check_sgl_tx} checks each SGE once per request); the receive side leases the part of a buffer that
 * the message's bytes read off the stream so far will fill, and keeps it while it places them. A lease is kept when
 * it is {@link DmaLease#stable stable}; one that is not (an on-demand or dma-buf region, a window) serves the bytes it
 * was taken for and is closed, and the buffer is leased per FPDU from then on. Closed on the thread that took them,
 * when the message ends, when the engine's pass ends and before the receive path waits for the stream, so no lease
 * outlives a pass or holds off a deregistration while a peer keeps a message unfinished.
 */
final class SgeLeases implements AutoCloseable {
    private final DmaLease[] held;
    /** Where each kept lease starts in its buffer (an offset in the SGE, or the tagged offset of an STag). */
    private final long[] base;
    private final boolean[] unstable;

    SgeLeases(int n) {
        held = new DmaLease[n];
        base = new long[n];
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
            base[i] = 0;
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

    /**
     * Writes {@code src} at {@code from} of buffer {@code i} (the receive side): through the kept lease when it covers
     * those bytes, else through a new lease of {@code ahead} bytes from {@code from} ({@code lease} makes a lease of
     * the length it is given), kept when stable. When that lease is refused although the bytes of this piece alone
     * might not be (the message goes on beyond the buffer, or beyond what the STag grants), a lease of just them
     * decides, so that the placement fails exactly where a per-FPDU lease would.
     *
     * @param ahead the bytes from {@code from} on that the message's buffered FPDUs will place into this buffer,
     *              at least {@code src.byteSize()}; asked only when a new lease is taken
     * @throws AccessFault when the bytes of this piece are refused
     */
    void write(int i, long from, LongSupplier ahead, MemorySegment src, LongFunction<DmaLease> lease) {
        long n = src.byteSize();
        DmaLease l = held[i];
        if (l != null) {
            long off = from - base[i];
            if (Long.compareUnsigned(off, l.length()) <= 0 && Long.compareUnsigned(n, l.length() - off) <= 0) {
                l.write(off, src);
                return;
            }
        }
        DmaLease w = null;
        if (!unstable[i]) {
            long span = Math.max(n, ahead.getAsLong());
            try {
                w = lease.apply(span);
            } catch (AccessFault e) {
                if (span == n) {
                    throw e;
                }
            }
        }
        if (w != null && w.stable()) {
            close(i);
            held[i] = w;
            base[i] = from;
            w.write(0, src);
            return;
        }
        if (w != null) {
            unstable[i] = true;
            try (DmaLease once = w) {
                once.write(0, src);
            }
            return;
        }
        try (DmaLease piece = lease.apply(n)) {
            piece.write(0, src);
        }
    }

    private void close(int i) {
        DmaLease l = held[i];
        if (l != null) {
            held[i] = null;
            l.close();
        }
    }

    /** Ends the pass or the message: every kept lease closed (the next one takes new ones). */
    @Override
    public void close() {
        for (int i = 0; i < held.length; i++) {
            close(i);
        }
    }
}
