package dev.dmaplane.accel.spi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.PciFunction;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Objects;

/**
 * A device's VRAM as TTM's VRAM manager sees it ({@code amdgpu_gmc}'s {@code real_vram_size} and
 * {@code visible_vram_size}): {@code totalSize} bytes, of which the first {@code visibleSize} are the CPU- and
 * peer-visible window of memory BAR {@code bar} of {@code function}; the rest only the GPU's engines reach. The
 * {@code reserved} ranges are the driver's own (page tables, firmware): the core never hands them out, as
 * {@code amdgpu_vram_mgr_reserve_range} keeps them from {@code drm_buddy}. Offsets are the GPU's own VRAM offsets.
 */
public record VramInfo(PciFunction function, int bar, long totalSize, long visibleSize, List<Range> reserved) {
    private static final long PAGE = 4096;

    /** A VRAM range of {@code size} bytes from {@code offset}. */
    public record Range(long offset, long size) {
        /** The offset just past the range. */
        public long end() {
            return offset + size;
        }
    }

    /**
     * {@code EINVAL} naming the value for sizes not page-aligned, a window larger than the VRAM, a reserved range
     * not whole pages inside the VRAM or overlapping another, or a window left with no unreserved page.
     */
    public VramInfo {
        Objects.requireNonNull(function, "function");
        if (visibleSize <= 0 || visibleSize % PAGE != 0 || totalSize < visibleSize || totalSize % PAGE != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: VRAM of %#x bytes with a visible window of %#x: both"
                    + " page-aligned, the window positive and not larger", function.bdf(), totalSize, visibleSize));
        }
        ErrnoException.check(reserved != null, Errno.EINVAL, function.bdf() + ": reserved VRAM ranges are null");
        List<Range> sorted = new ArrayList<>(reserved);
        for (Range r : sorted) {
            ErrnoException.check(r != null && r.offset() >= 0 && r.size() > 0 && r.offset() % PAGE == 0
                    && r.size() % PAGE == 0 && r.offset() <= totalSize - r.size(), Errno.EINVAL, String.format(
                    "%s: reserved VRAM range %s is not whole pages inside %#x bytes of VRAM", function.bdf(), r,
                    totalSize));
        }
        sorted.sort(Comparator.comparingLong(Range::offset));
        long visibleReserved = 0;
        for (int i = 0; i < sorted.size(); i++) {
            Range r = sorted.get(i);
            ErrnoException.check(i == 0 || sorted.get(i - 1).end() <= r.offset(), Errno.EINVAL, String.format(
                    "%s: reserved VRAM range %s overlaps %s", function.bdf(), r, i == 0 ? r : sorted.get(i - 1)));
            visibleReserved += Math.max(0, Math.min(r.end(), visibleSize) - r.offset());
        }
        ErrnoException.check(visibleReserved < visibleSize, Errno.EINVAL, String.format(
                "%s: reserved VRAM ranges %s cover the whole visible window of %#x bytes", function.bdf(), sorted,
                visibleSize));
        reserved = List.copyOf(sorted);
    }

    /** VRAM without reserved ranges. */
    public VramInfo(PciFunction function, int bar, long totalSize, long visibleSize) {
        this(function, bar, totalSize, visibleSize, List.of());
    }

    /** Bytes only the GPU's engines reach. */
    public long invisibleSize() {
        return totalSize - visibleSize;
    }

    /** Bytes the driver reserved. */
    public long reservedSize() {
        return reserved.stream().mapToLong(Range::size).sum();
    }
}
