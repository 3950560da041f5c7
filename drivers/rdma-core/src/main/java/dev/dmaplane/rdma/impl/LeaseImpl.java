package dev.dmaplane.rdma.impl;

import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.DmaLease;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.function.Supplier;

/** A lease over bus ranges; every byte moves through the device's bus master, so the IOMMU checks it. */
final class LeaseImpl implements DmaLease {
    /** What closing an empty lease does: nothing, it holds no lock. */
    private static final Runnable NOTHING_HELD = () -> {
    };

    private final List<DmaSegment> segments;
    private final BusMaster bus;
    private final long length;
    private final Runnable onClose;
    private final boolean stable;
    /**
     * Takes a reference to the leased memory and returns what drops it ({@link #retain}); null when the lease cannot
     * be retained.
     */
    private final Supplier<Runnable> reference;
    /** Leases are closed on the thread that took them (see {@link DmaLease}). */
    private boolean closed;

    LeaseImpl(List<DmaSegment> segments, BusMaster bus, Runnable onClose, boolean stable) {
        this(segments, bus, onClose, stable, null);
    }

    /** A lease whose memory {@code reference} keeps for a {@link #retain retained} lease; stable when it is given. */
    LeaseImpl(List<DmaSegment> segments, BusMaster bus, Runnable onClose, Supplier<Runnable> reference) {
        this(segments, bus, onClose, true, reference);
    }

    private LeaseImpl(List<DmaSegment> segments, BusMaster bus, Runnable onClose, boolean stable,
                      Supplier<Runnable> reference) {
        this.stable = stable;
        this.reference = reference;
        this.segments = List.copyOf(segments); // no copy for an immutable list
        this.bus = bus;
        this.onClose = onClose;
        long n = 0;
        for (DmaSegment s : segments) {
            n += s.length();
        }
        this.length = n;
    }

    /**
     * A lease of no bytes, for a zero-length access (IBA C9-88: no key or address needed). A new one each time: a
     * lease has a state (open, closed) that its user changes, so none is shared.
     */
    static LeaseImpl empty() {
        return new LeaseImpl(List.of(), null, NOTHING_HELD, false);
    }

    @Override
    public long length() {
        return length;
    }

    @Override
    public boolean stable() {
        return stable;
    }

    @Override
    public List<DmaSegment> segments() {
        return segments;
    }

    private void check(long offset, long len) {
        if (closed) {
            throw new ErrnoException(Errno.EINVAL, "lease is closed");
        }
        if (offset < 0 || len < 0 || offset > length - len) {
            throw new ErrnoException(Errno.EINVAL, "range " + offset + "+" + len + " is outside the lease of " + length + " bytes");
        }
    }

    @Override
    public void read(long offset, MemorySegment dst) {
        check(offset, dst.byteSize());
        long at = singleSegment(offset, dst.byteSize());
        if (at >= 0) {
            bus.read(at, dst); // one bus range: no slicing
            return;
        }
        walk(offset, dst.byteSize(), (bus1, busAddr, pos, n) -> bus1.read(busAddr, dst.asSlice(pos, n)));
    }

    @Override
    public void write(long offset, MemorySegment src) {
        check(offset, src.byteSize());
        long at = singleSegment(offset, src.byteSize());
        if (at >= 0) {
            bus.write(at, src);
            return;
        }
        walk(offset, src.byteSize(), (bus1, busAddr, pos, n) -> bus1.write(busAddr, src.asSlice(pos, n)));
    }

    /** The bus address of {@code [offset, offset + len)} when the lease's first range holds all of it, else -1. */
    private long singleSegment(long offset, long len) {
        if (segments.isEmpty()) {
            return -1;
        }
        DmaSegment s = segments.getFirst();
        return offset + len <= s.length() ? s.dmaAddress() + offset : -1;
    }

    @Override
    public void copyTo(long offset, DmaLease target, long targetOffset, long len) {
        check(offset, len);
        if (!(target instanceof LeaseImpl t)) {
            throw new ErrnoException(Errno.EINVAL, "not a lease of this core: " + target);
        }
        t.check(targetOffset, len);
        long from = singleSegment(offset, len);
        long to = t.singleSegment(targetOffset, len);
        if (from >= 0 && to >= 0) {
            bus.copyTo(from, t.bus, to, len); // one bus range on each side
            return;
        }
        // pair up the bus ranges of both sides
        walk(offset, len, (srcBus, srcAddr, pos, n) -> t.walk(targetOffset + pos, n,
                (dstBus, dstAddr, pos2, m) -> srcBus.copyTo(srcAddr + pos2, dstBus, dstAddr, m)));
    }

    /**
     * Every copy is checked against both leases before any byte moves; with a single bus range on each side the
     * bus masters run the chain, else the first copy goes alone.
     */
    @Override
    public int copyTo(long[] offsets, DmaLease target, long[] targetOffsets, int[] lengths, int from, int to) {
        BusMaster.checkChain(offsets, targetOffsets, lengths, from, to);
        if (!(target instanceof LeaseImpl t)) {
            throw new ErrnoException(Errno.EINVAL, "not a lease of this core: " + target);
        }
        for (int i = from; i < to; i++) {
            check(offsets[i], lengths[i]);
            t.check(targetOffsets[i], lengths[i]);
        }
        if (segments.size() == 1 && t.segments.size() == 1) {
            return bus.copyTo(segments.getFirst().dmaAddress(), t.bus, t.segments.getFirst().dmaAddress(), offsets,
                    targetOffsets, lengths, from, to);
        }
        copyTo(offsets[from], target, targetOffsets[from], lengths[from]);
        return 1;
    }

    @Override
    public long compareAndSwap(long offset, long compare, long swap) {
        return bus.compareAndSwap(busAddress(offset), compare, swap);
    }

    @Override
    public long fetchAndAdd(long offset, long add) {
        return bus.fetchAndAdd(busAddress(offset), add);
    }

    /** The bus address of an 8-byte quantity at {@code offset}, which must lie in one segment. */
    private long busAddress(long offset) {
        check(offset, 8);
        long pos = 0;
        for (DmaSegment s : segments) {
            if (offset < pos + s.length()) {
                if (offset + 8 > pos + s.length()) {
                    throw new ErrnoException(Errno.EINVAL, "8 bytes at " + offset + " cross a DMA segment");
                }
                return s.dmaAddress() + (offset - pos);
            }
            pos += s.length();
        }
        throw new ErrnoException(Errno.EINVAL, "offset " + offset + " is outside the lease");
    }

    private interface Chunk {
        void move(BusMaster bus, long busAddr, long pos, long n);
    }

    private void walk(long offset, long len, Chunk chunk) {
        long pos = 0;
        long done = 0;
        for (DmaSegment s : segments) {
            if (done == len) {
                return;
            }
            long segEnd = pos + s.length();
            if (offset + done < segEnd) {
                long inSeg = offset + done - pos;
                long n = Math.min(len - done, s.length() - inSeg);
                chunk.move(bus, s.dmaAddress() + inSeg, done, n);
                done += n;
            }
            pos = segEnd;
        }
    }

    /**
     * The reference is taken while this lease still holds off deregistration (the memory cannot be released under
     * it), then this lease lets go; the new one drops the reference when closed and cannot be retained again.
     */
    @Override
    public DmaLease retain() {
        if (closed) {
            throw new ErrnoException(Errno.EINVAL, "lease is closed");
        }
        if (reference == null) {
            throw new ErrnoException(Errno.EINVAL, "a lease of " + length + " bytes that is not stable (on-demand,"
                    + " dma-buf, window or empty) cannot be retained");
        }
        LeaseImpl kept = new LeaseImpl(segments, bus, reference.get(), true, null);
        close();
        return kept;
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            onClose.run();
        }
    }
}
