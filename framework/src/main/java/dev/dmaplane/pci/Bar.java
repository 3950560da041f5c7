package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.impl.BarRules;
import org.osgi.annotation.versioning.ProviderType;

import java.lang.foreign.MemorySegment;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;

/**
 * A memory Base Address Register of a function ({@code pci_resource_start/len(pdev, bar)}): its index, size,
 * 32/64-bit and prefetchable flags, the bus address it is programmed with, and what answers accesses to it:
 * an {@link Mmio} register block or {@link Memory} device memory.
 */
public final class Bar {
    /** The smallest BAR this model allows: one page. */
    public static final long MIN_SIZE = 4096;

    private final int index;
    private final long size;
    private final boolean is64Bit;
    private final boolean prefetchable;
    private final ConfigSpace config;
    private final Backing backing;

    Bar(int index, long size, boolean is64Bit, boolean prefetchable, ConfigSpace config, Backing backing) {
        checkSize(index, size, is64Bit);
        this.index = index;
        this.size = size;
        this.is64Bit = is64Bit;
        this.prefetchable = prefetchable;
        this.config = Objects.requireNonNull(config, "config");
        this.backing = Objects.requireNonNull(backing, "backing");
        if (backing.size() != size) {
            throw new ErrnoException(Errno.EINVAL, "BAR " + index + " backing size " + backing.size() + " differs from BAR size " + size);
        }
    }

    static void checkSize(int index, long size, boolean is64Bit) {
        if (!BarRules.isBarSize(size)) {
            throw new ErrnoException(Errno.EINVAL, "BAR " + index + " size " + size + " must be a power of two of at least 4 KiB");
        }
        if (!is64Bit && !BarRules.fits32Bit(size)) {
            throw new ErrnoException(Errno.EINVAL, "BAR " + index + " size " + size + " does not fit a 32-bit BAR (max 2 GiB)");
        }
    }

    /** The BAR register index, 0..5 (0..1 on a bridge); a 64-bit BAR also uses {@code index + 1}. */
    public int index() {
        return index;
    }

    /** Size in bytes, a power of two. */
    public long size() {
        return size;
    }

    public boolean is64Bit() {
        return is64Bit;
    }

    public boolean prefetchable() {
        return prefetchable;
    }

    /** The bus address currently programmed in the BAR register(s) ({@code pci_bus_address}). */
    public long address() {
        return config.barAddress(index);
    }

    /** Whether the function decodes this BAR now: present, with its Memory Space Enable set (7.5.1.1.3). */
    public boolean decoding() {
        return config.present() && config.memorySpaceEnabled();
    }

    /** What answers accesses through this BAR. */
    public Backing backing() {
        return backing;
    }

    /**
     * The MMIO register block behind this BAR.
     *
     * @throws ErrnoException {@code EINVAL} if this BAR is device memory
     */
    public Mmio mmio() {
        if (backing instanceof Mmio m) {
            return m;
        }
        throw new ErrnoException(Errno.EINVAL, "BAR " + index + " is device memory, not an MMIO register block");
    }

    /**
     * The device memory behind this BAR.
     *
     * @throws ErrnoException {@code EINVAL} if this BAR is an MMIO register block
     */
    public Memory memory() {
        if (backing instanceof Memory m) {
            return m;
        }
        throw new ErrnoException(Errno.EINVAL, "BAR " + index + " is an MMIO register block, not device memory");
    }

    @Override
    public String toString() {
        return String.format("BAR%d[%s %s%s size=%#x @ %#x]", index, backing instanceof Mmio ? "mmio" : "memory",
                is64Bit ? "64-bit" : "32-bit", prefetchable ? " pref" : "", size, address());
    }

    static void checkRange(String what, long offset, long length, long size) {
        if (length < 0) {
            throw new ErrnoException(Errno.EINVAL, what + ": negative length " + length);
        }
        if (offset < 0 || offset > size) {
            throw new ErrnoException(Errno.EFAULT, String.format("%s: offset %#x is outside the %#x-byte BAR", what, offset, size));
        }
        long end;
        try {
            end = Math.addExact(offset, length);
        } catch (ArithmeticException e) {
            throw new ErrnoException(Errno.ERANGE, String.format("%s: offset %#x + length %#x overflows", what, offset, length));
        }
        if (end > size) {
            throw new ErrnoException(Errno.EFAULT, String.format("%s: offset %#x + length %#x runs past the %#x-byte BAR",
                    what, offset, length, size));
        }
    }

    /** What answers CPU accesses through a BAR. */
    @ProviderType
    public sealed interface Backing permits Mmio, Memory {
        /** Bytes this backing covers, the BAR size. */
        long size();
    }

    /**
     * A register BAR: loads and stores go to the attached {@link MmioHandler}, except those to the function's MSI-X
     * table and PBA when the capability places them here, which the {@link Msix} structures answer. Until a device model attaches
     * one, and while the function's Memory Space Enable is clear, reads return all-ones and writes are dropped, as
     * accesses nobody claims on a real bus do (a master abort). A request the function receives while it does not
     * decode memory (Memory Space Enable clear, or D3hot) is an Unsupported Request it logs (PCIe Base Spec 7.5.1.1.3).
     */
    public static final class Mmio implements Backing {
        private final long size;
        private final String owner;
        private final BooleanSupplier decoding;
        /** The function's config space and the BAR register, for logging a request it cannot complete; or null. */
        private final ConfigSpace function;
        private final int index;
        private final AtomicReference<MmioHandler> handler = new AtomicReference<>();
        /** The function's MSI-X table and PBA when they live in this BAR; they answer before the handler. */
        private volatile Msix msix;

        Mmio(long size, String owner) {
            this.size = size;
            this.owner = owner;
            this.decoding = () -> true;
            this.function = null;
            this.index = -1;
        }

        /** Register block of BAR {@code index} that answers only while the function {@code cs} decodes memory. */
        Mmio(long size, String owner, ConfigSpace cs, int index) {
            this.size = size;
            this.owner = owner;
            this.decoding = cs::memorySpaceEnabled;
            this.function = cs;
            this.index = index;
        }

        /** The function got a request it cannot complete: {@code error} is the AER bit it logs. */
        private void requestError(int error, long offset, int accessSize, boolean posted) {
            if (function != null) {
                PcieErrors.memoryRequestError(function, PcieErrors.ROOT_COMPLEX_ID, error, function.barAddress(index) + offset, accessSize, posted);
            }
        }

        @Override
        public long size() {
            return size;
        }

        /** Places the function's MSI-X table and PBA in this BAR. */
        void claim(Msix m) {
            this.msix = m;
        }

        /** The attached device model, if any. */
        public Optional<MmioHandler> handler() {
            return Optional.ofNullable(handler.get());
        }

        /**
         * Attaches the device model that answers this BAR.
         *
         * @throws ErrnoException {@code EBUSY} if another handler is attached
         */
        public void attach(MmioHandler h) {
            ErrnoException.requireNonNull(h, "handler");
            if (!handler.compareAndSet(null, h)) {
                throw new ErrnoException(Errno.EBUSY, owner + ": an MMIO handler is already attached");
            }
        }

        /**
         * Detaches {@code h}.
         *
         * @throws ErrnoException {@code EINVAL} if {@code h} is not the attached handler
         */
        public void detach(MmioHandler h) {
            if (h == null || !handler.compareAndSet(h, null)) {
                throw new ErrnoException(Errno.EINVAL, owner + ": that MMIO handler is not the one attached");
            }
        }

        /**
         * Loads {@code size} (1, 2, 4 or 8) bytes at {@code offset}.
         *
         * @throws ErrnoException {@code EINVAL} for a bad size or misaligned offset, {@code EFAULT} outside the BAR
         */
        public long read(long offset, int size) {
            check(offset, size);
            MmioHandler h = handler.get();
            Msix m = msix;
            boolean structure = m != null && m.claims(offset);
            if (!decoding.getAsBoolean()) {
                // 7.5.1.1.3: a function that does not decode memory handles the request as Unsupported
                requestError(PciRegs.ERR_UNC_UNSUP, offset, size, false);
                return size == 8 ? -1L : (1L << (8 * size)) - 1;
            }
            if (h == null && !structure) {
                return size == 8 ? -1L : (1L << (8 * size)) - 1;
            }
            if (structure) {
                return m.read(offset, size);
            }
            if (h.refuses(offset, size)) {
                requestError(PciRegs.ERR_UNC_COMP_ABORT, offset, size, false);
            }
            return h.read(offset, size);
        }

        /**
         * Stores the low {@code size} (1, 2, 4 or 8) bytes of {@code value} at {@code offset}.
         *
         * @throws ErrnoException {@code EINVAL} for a bad size or misaligned offset, {@code EFAULT} outside the BAR
         */
        public void write(long offset, int size, long value) {
            check(offset, size);
            if (!decoding.getAsBoolean()) {
                requestError(PciRegs.ERR_UNC_UNSUP, offset, size, true);
                return;
            }
            long v = size == 8 ? value : value & ((1L << (8 * size)) - 1);
            Msix m = msix;
            MmioHandler h = handler.get();
            if (m != null && m.claims(offset)) {
                m.write(offset, size, v);
            } else if (h != null) {
                if (h.refuses(offset, size)) {
                    requestError(PciRegs.ERR_UNC_COMP_ABORT, offset, size, true);
                }
                h.write(offset, size, v);
            }
        }

        private void check(long offset, int accessSize) {
            if (accessSize != 1 && accessSize != 2 && accessSize != 4 && accessSize != 8) {
                throw new ErrnoException(Errno.EINVAL, owner + ": MMIO access size must be 1, 2, 4 or 8, not " + accessSize);
            }
            checkRange(owner, offset, accessSize, size);
            if (offset % accessSize != 0) {
                throw new ErrnoException(Errno.EINVAL, String.format("%s: MMIO offset %#x is not aligned to size %d",
                        owner, offset, accessSize));
            }
        }
    }

    /**
     * Device memory behind a BAR, such as a GPU's VRAM. It is backed by {@link #CHUNK_SIZE} chunks taken from
     * the topology's arena the first time each is written; never-written memory reads as zeros and costs
     * nothing, so a 16 GiB BAR is free until touched.
     */
    public static final class Memory implements Backing {
        /** Granule of lazy allocation: one 2 MiB huge page. */
        public static final long CHUNK_SIZE = 2L << 20;

        private final long size;
        private final long chunkSize;
        private final String owner;
        private final DeviceMemoryPool pool;
        /** Chunk index to backing; only written chunks are present, so even a huge BAR costs nothing up front. */
        private final ConcurrentMap<Long, MemorySegment> chunks = new ConcurrentHashMap<>();

        Memory(long size, String owner, DeviceMemoryPool pool) {
            this.size = size;
            this.chunkSize = Math.min(size, CHUNK_SIZE);
            this.owner = owner;
            this.pool = Objects.requireNonNull(pool, "pool");
        }

        @Override
        public long size() {
            return size;
        }

        /** Bytes actually allocated so far (touched chunks times chunk size). */
        public long committedBytes() {
            return chunks.size() * chunkSize;
        }

        /**
         * Copies {@code dst.byteSize()} bytes at {@code offset} into {@code dst}; may span chunks.
         *
         * @throws ErrnoException {@code EFAULT} outside the BAR, {@code ERANGE} on offset overflow,
         *                        {@code ENODEV} once the topology is closed
         */
        public void read(long offset, MemorySegment dst) {
            long len = dst.byteSize();
            checkRange(owner, offset, len, size);
            pool.checkOpen(owner);
            if (dst.isReadOnly()) {
                throw new ErrnoException(Errno.EINVAL, owner + ": destination segment is read-only");
            }
            long done = 0;
            while (done < len) {
                long at = offset + done;
                long within = at % chunkSize;
                long n = Math.min(chunkSize - within, len - done);
                MemorySegment c = chunks.get(at / chunkSize);
                if (c == null) {
                    dst.asSlice(done, n).fill((byte) 0);
                } else {
                    MemorySegment.copy(c, within, dst, done, n);
                }
                done += n;
            }
        }

        /**
         * Copies all of {@code src} to {@code offset}; may span chunks, allocating those first written.
         *
         * @throws ErrnoException {@code EFAULT} outside the BAR, {@code ERANGE} on offset overflow,
         *                        {@code ENOMEM} if backing cannot be allocated, {@code ENODEV} once closed
         */
        public void write(long offset, MemorySegment src) {
            long len = src.byteSize();
            checkRange(owner, offset, len, size);
            pool.checkOpen(owner);
            long done = 0;
            while (done < len) {
                long at = offset + done;
                long within = at % chunkSize;
                long n = Math.min(chunkSize - within, len - done);
                MemorySegment.copy(src, done, chunk(at / chunkSize), within, n);
                done += n;
            }
        }

        /**
         * Zeroes {@code length} bytes at {@code offset} without committing memory (a device's fast clear): a chunk
         * never written already reads as zeros and stays uncommitted; a committed chunk is zero-filled in the range
         * and stays committed, so live {@link #segment} views of it remain valid.
         *
         * @throws ErrnoException {@code EINVAL} for a negative length, {@code EFAULT} outside the BAR,
         *                        {@code ERANGE} on offset overflow, {@code ENODEV} once closed
         */
        public void zero(long offset, long length) {
            checkRange(owner, offset, length, size);
            pool.checkOpen(owner);
            long done = 0;
            while (done < length) {
                long at = offset + done;
                long within = at % chunkSize;
                long n = Math.min(chunkSize - within, length - done);
                MemorySegment c = chunks.get(at / chunkSize);
                if (c != null) {
                    c.asSlice(within, n).fill((byte) 0);
                }
                done += n;
            }
        }

        /**
         * A live view of {@code length} bytes at {@code offset} for a device model that computes on its memory
         * in place; the range must lie within one chunk ({@link #CHUNK_SIZE}), which is allocated if needed.
         *
         * @throws ErrnoException {@code EINVAL} if the range crosses a chunk boundary, {@code EFAULT} outside the BAR
         */
        public MemorySegment segment(long offset, long length) {
            checkRange(owner, offset, length, size);
            pool.checkOpen(owner);
            long within = offset % chunkSize;
            if (length == 0 || within + length > chunkSize) {
                throw new ErrnoException(Errno.EINVAL, String.format("%s: range %#x+%#x is empty or crosses a %#x-byte chunk",
                        owner, offset, length, chunkSize));
            }
            return chunk(offset / chunkSize).asSlice(within, length);
        }

        /**
         * A live view of {@code length} bytes at {@code offset} if their chunk was ever written, else empty (the
         * range reads as zeros); a device model's read in place that leaves never-written memory uncommitted. The
         * range must lie within one chunk, as for {@link #segment}.
         *
         * @throws ErrnoException {@code EINVAL} if the range crosses a chunk boundary, {@code EFAULT} outside the BAR
         */
        public Optional<MemorySegment> committedSegment(long offset, long length) {
            checkRange(owner, offset, length, size);
            pool.checkOpen(owner);
            long within = offset % chunkSize;
            if (length == 0 || within + length > chunkSize) {
                throw new ErrnoException(Errno.EINVAL, String.format("%s: range %#x+%#x is empty or crosses a %#x-byte chunk",
                        owner, offset, length, chunkSize));
            }
            return Optional.ofNullable(chunks.get(offset / chunkSize)).map(c -> c.asSlice(within, length));
        }

        private MemorySegment chunk(long index) {
            MemorySegment c = chunks.get(index);
            return c != null ? c : chunks.computeIfAbsent(index, k -> pool.allocate(chunkSize, owner));
        }
    }
}
