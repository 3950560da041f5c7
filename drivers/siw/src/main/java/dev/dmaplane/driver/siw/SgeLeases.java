package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.HwMr;
import dev.dmaplane.rdma.verbs.WcStatus;

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
 * <p>
 * A lease stays usable when its STag is invalidated. The receive side of a WRITE or a SEND therefore checks the
 * region's {@code stag_valid} before each piece it places through a kept lease, as {@code siw_proc_write} and
 * {@code siw_proc_send} call {@code siw_check_mem} for every segment with the memory kept from the first: one
 * volatile read of the region's state, the region looked up once per kept lease. The send side does not
 * ({@code siw_check_sgl_tx} checks once per request). A Read Response's sink is not leased here: the receive path
 * keeps it retained for the whole READ ({@link Rx}), as {@code siw_proc_rresp} keeps {@code wqe->mem[0]}.
 */
final class SgeLeases implements AutoCloseable {
    private final DmaLease[] held;
    /** Where each kept lease starts in its buffer (an offset in the SGE, or the tagged offset of an STag). */
    private final long[] base;
    private final boolean[] unstable;
    /** The regions whose STags are checked at every piece written, or null when they are not. */
    private final SiwRegions checked;
    /** The status of the fault that refuses an invalidated STag (the one the core's lease would carry). */
    private final WcStatus refused;
    /** The region each kept lease reaches, when {@link #checked}: its STag is checked before each write. */
    private final HwMr[] region;

    /** Leases whose STags are checked when they are taken only (the send side). */
    SgeLeases(int n) {
        this(n, null, null);
    }

    /**
     * Leases whose STags are also checked at every piece written through a kept lease, in {@code regions}; a refusal
     * is an {@link AccessFault} with {@code refused}.
     */
    SgeLeases(int n, SiwRegions regions, WcStatus refused) {
        held = new DmaLease[n];
        base = new long[n];
        unstable = new boolean[n];
        checked = regions;
        this.refused = refused;
        region = regions == null ? null : new HwMr[n];
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
     * those bytes (its STag checked first, when {@link #checked}), else through a new lease of {@code ahead} bytes
     * from {@code from} ({@code lease} makes a lease of the length it is given), kept when stable. When that lease is
     * refused although the bytes of this piece alone might not be (the message goes on beyond the buffer, or beyond
     * what the STag grants), a lease of just them decides, so that the placement fails exactly where a per-FPDU lease
     * would.
     *
     * @param stag  the STag the bytes are reached through (an lkey or an rkey)
     * @param ahead the bytes from {@code from} on that the message's buffered FPDUs will place into this buffer,
     *              at least {@code src.byteSize()}; asked only when a new lease is taken
     * @throws AccessFault when the bytes of this piece are refused
     */
    void write(int i, int stag, long from, LongSupplier ahead, MemorySegment src, LongFunction<DmaLease> lease) {
        long n = src.byteSize();
        DmaLease l = held[i];
        if (l != null) {
            long off = from - base[i];
            if (Long.compareUnsigned(off, l.length()) <= 0 && Long.compareUnsigned(n, l.length() - off) <= 0) {
                HwMr m = region == null ? null : region[i];
                if (m != null && !m.isStagValid()) {
                    // siw_check_mem: stag_valid is looked at before anything else, at every segment
                    throw new AccessFault(refused, Errno.EINVAL, "siw: STag 0x" + Integer.toHexString(stag)
                            + " was invalidated while its message was being placed");
                }
                l.write(off, src);
                return;
            }
        }
        DmaLease w = null;
        HwMr m = null;
        if (!unstable[i]) {
            // the region before its lease: a deregistration begun after the lease was taken, which takes the region
            // off the device's list, then finds its STag invalid at the next segment (siw_mr_drop_mem)
            m = region == null ? null : checked.region(stag);
            long span = Math.max(n, ahead.getAsLong());
            try {
                w = lease.apply(span);
            } catch (AccessFault e) {
                if (span == n) {
                    throw e;
                }
            }
        }
        if (w != null && w.stable() && (region == null || m != null)) {
            close(i);
            held[i] = w;
            base[i] = from;
            if (region != null) {
                region[i] = m;
            }
            w.write(0, src);
            return;
        }
        if (w != null) {
            unstable[i] |= !w.stable();
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
            if (region != null) {
                region[i] = null;
            }
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
