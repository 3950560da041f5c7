package dev.dmaplane.hw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.MmioHandler;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongConsumer;
import java.util.function.LongSupplier;

/**
 * A device's registers behind a BAR, declared one by one with their width and what reading and writing them does
 * (QEMU's {@code MemoryRegionOps} with its {@code REG32}/{@code REG64} declarations, libvfio-user's region
 * callbacks). An access must hit a register at its offset with its width; any other access (a hole, a wrong width)
 * reads as all-ones and its write is dropped, is counted in {@link #badAccesses()}, and is refused
 * ({@link #refuses}): the function logs a Completer Abort. Callbacks run on the CPU's thread and do their own locking.
 */
public final class RegisterBlock implements MmioHandler {
    /** What one register does. */
    private record Register(String name, long offset, int width, LongSupplier read, LongConsumer write) {
    }

    private final String name;
    private final Register[] byOffset;
    private final long[] offsets;
    private final long extent;
    private final AtomicLong badAccesses = new AtomicLong();

    private RegisterBlock(String name, List<Register> regs) {
        this.name = name;
        this.byOffset = regs.toArray(Register[]::new);
        this.offsets = regs.stream().mapToLong(Register::offset).toArray();
        this.extent = regs.isEmpty() ? 0 : regs.getLast().offset() + regs.getLast().width();
    }

    /** Starts a block; {@code name} prefixes error messages (e.g. {@code "crc0 BAR0"}). */
    public static Builder builder(String name) {
        return new Builder(name);
    }

    /** Bytes from offset 0 to the end of the last register: the BAR must be at least this large. */
    public long extent() {
        return extent;
    }

    /** Accesses that hit no register at its width: reads answered with all-ones, writes dropped. */
    public long badAccesses() {
        return badAccesses.get();
    }

    /** An access that hits no register at its width is a violation of the programming model: a Completer Abort. */
    @Override
    public boolean refuses(long offset, int size) {
        return find(offset, size) == null;
    }

    @Override
    public long read(long offset, int size) {
        Register r = find(offset, size);
        if (r == null || r.read() == null) {
            if (r == null) {
                badAccesses.incrementAndGet();
                return size == 8 ? -1L : (1L << (8 * size)) - 1;
            }
            return 0; // a write-only register (a doorbell) reads as zero
        }
        long v = r.read().getAsLong();
        return size == 8 ? v : v & ((1L << (8 * size)) - 1);
    }

    @Override
    public void write(long offset, int size, long value) {
        Register r = find(offset, size);
        if (r == null) {
            badAccesses.incrementAndGet();
        } else if (r.write() != null) {
            r.write().accept(value);
        }
    }

    private Register find(long offset, int size) {
        int lo = 0;
        int hi = offsets.length - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (offsets[mid] < offset) {
                lo = mid + 1;
            } else if (offsets[mid] > offset) {
                hi = mid - 1;
            } else {
                Register r = byOffset[mid];
                return r.width() == size ? r : null;
            }
        }
        return null;
    }

    @Override
    public String toString() {
        return name + " (" + byOffset.length + " registers, " + extent + " bytes)";
    }

    /** Declares registers; {@link #build} checks that they are aligned and do not overlap. */
    public static final class Builder {
        private final String name;
        private final List<Register> regs = new ArrayList<>();

        private Builder(String name) {
            if (name == null || name.isBlank()) {
                throw new ErrnoException(Errno.EINVAL, "a register block needs a name, not '" + name + "'");
            }
            this.name = name;
        }

        /** A read/write register: reads call {@code read}, writes pass the written value (zero-extended) to {@code write}. */
        public Builder register(String reg, long offset, int width, LongSupplier read, LongConsumer write) {
            regs.add(new Register(reg, offset, width, need(read, reg, "read"),
                    need(write, reg, "write")));
            return this;
        }

        /** A read-only register: writes are dropped, as writes to read-only bits are. */
        public Builder readOnly(String reg, long offset, int width, LongSupplier read) {
            regs.add(new Register(reg, offset, width, need(read, reg, "read"), null));
            return this;
        }

        /** A read-only register holding {@code value}, such as an ID or a capability register. */
        public Builder constant(String reg, long offset, int width, long value) {
            return readOnly(reg, offset, width, () -> value);
        }

        /**
         * A doorbell: writing it hands the written value (a queue tail, a command) to {@code ring} on the writing
         * thread, as a posted MMIO write reaches the device; it reads as zero.
         */
        public Builder doorbell(String reg, long offset, int width, LongConsumer ring) {
            regs.add(new Register(reg, offset, width, null, need(ring, reg, "ring")));
            return this;
        }

        /**
         * The block.
         *
         * @throws ErrnoException {@code EINVAL} naming the register for a width other than 1, 2, 4 or 8, an offset
         *                        that is negative or not a multiple of the width, or two registers that overlap
         */
        public RegisterBlock build() {
            Map<Long, Register> sorted = new TreeMap<>();
            for (Register r : regs) {
                int w = r.width();
                if (w != 1 && w != 2 && w != 4 && w != 8) {
                    throw new ErrnoException(Errno.EINVAL, name + ": register " + r.name() + " has width " + w
                            + "; widths are 1, 2, 4 or 8 bytes");
                }
                if (r.offset() < 0 || r.offset() % w != 0) {
                    throw new ErrnoException(Errno.EINVAL, String.format("%s: register %s at offset %#x is not a"
                            + " non-negative multiple of its width %d", name, r.name(), r.offset(), w));
                }
                Register clash = sorted.put(r.offset(), r);
                if (clash != null) {
                    throw overlap(clash, r);
                }
            }
            List<Register> list = new ArrayList<>(sorted.values());
            for (int i = 1; i < list.size(); i++) {
                Register prev = list.get(i - 1);
                if (prev.offset() + prev.width() > list.get(i).offset()) {
                    throw overlap(prev, list.get(i));
                }
            }
            return new RegisterBlock(name, list);
        }

        private <T> T need(T callback, String reg, String what) {
            if (callback == null) {
                throw new ErrnoException(Errno.EINVAL, name + ": register " + reg + " needs a " + what + " callback");
            }
            return callback;
        }

        private ErrnoException overlap(Register a, Register b) {
            return new ErrnoException(Errno.EINVAL, String.format("%s: registers %s (%#x, %d bytes) and %s (%#x, %d bytes)"
                    + " overlap", name, a.name(), a.offset(), a.width(), b.name(), b.offset(), b.width()));
        }
    }
}
