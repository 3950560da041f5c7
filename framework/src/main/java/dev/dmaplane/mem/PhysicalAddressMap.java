package dev.dmaplane.mem;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentSkipListMap;

/**
 * The host's physical address space as the root complex decodes it ({@code /proc/iomem}): RAM below the PCI hole
 * and from 4 GiB on ({@link HostMemory}), device memory regions (BARs) in the hole and above RAM. A memory transaction to an address nothing claims is a master abort,
 * reported as {@code EFAULT}.
 */
public final class PhysicalAddressMap {
    private final HostMemory ram;
    private final ConcurrentSkipListMap<Long, PhysicalRegion> regions = new ConcurrentSkipListMap<>();

    public PhysicalAddressMap(HostMemory ram) {
        this.ram = ErrnoException.requireNonNull(ram, "ram");
    }

    public HostMemory ram() {
        return ram;
    }

    /** Claims a physical range for a device region ({@code request_mem_region}); EBUSY if it overlaps another. */
    public synchronized void add(PhysicalRegion region) {
        long base = region.base();
        long size = region.size();
        if (base < 0 || size <= 0 || base + size < base) {
            throw new ErrnoException(Errno.EINVAL, "region " + region.name() + " has a bad range 0x"
                    + Long.toHexString(base) + "+" + size);
        }
        if (ram.overlaps(base, size)) {
            throw new ErrnoException(Errno.EBUSY, "region " + region.name() + " at 0x" + Long.toHexString(base) + " overlaps RAM");
        }
        Map.Entry<Long, PhysicalRegion> below = regions.floorEntry(base + size - 1);
        if (below != null && below.getValue().base() + below.getValue().size() > base) {
            throw new ErrnoException(Errno.EBUSY, "region " + region.name() + " at 0x" + Long.toHexString(base)
                    + " overlaps " + below.getValue().name());
        }
        regions.put(base, region);
    }

    /** Releases a region claimed by {@link #add}. */
    public synchronized void remove(PhysicalRegion region) {
        regions.remove(region.base(), region);
    }

    /** Device regions, by address. */
    public List<PhysicalRegion> regions() {
        return List.copyOf(regions.values());
    }

    /** The device region holding {@code physAddr}, or null if it is RAM or nothing. */
    public PhysicalRegion regionAt(long physAddr) {
        Map.Entry<Long, PhysicalRegion> e = regions.floorEntry(physAddr);
        if (e == null) {
            return null;
        }
        PhysicalRegion r = e.getValue();
        return physAddr - r.base() < r.size() ? r : null;
    }

    /** Reads physical memory (RAM or a device region) into {@code dst}; the range must lie in one of them. */
    public void read(long physAddr, MemorySegment dst) {
        if (ram.contains(physAddr, dst.byteSize())) {
            ram.read(physAddr, dst);
            return;
        }
        PhysicalRegion r = claim(physAddr, dst.byteSize());
        r.read(physAddr - r.base(), dst);
    }

    /** Writes {@code src} to physical memory (RAM or a device region); the range must lie in one of them. */
    public void write(long physAddr, MemorySegment src) {
        if (ram.contains(physAddr, src.byteSize())) {
            ram.write(physAddr, src);
            return;
        }
        PhysicalRegion r = claim(physAddr, src.byteSize());
        r.write(physAddr - r.base(), src);
    }

    /** An 8-byte view for atomic operations at {@code physAddr}, which must be 8-byte aligned. */
    public MemorySegment atomicView(long physAddr) {
        if ((physAddr & 7) != 0) {
            throw new ErrnoException(Errno.EINVAL, "atomic access at 0x" + Long.toHexString(physAddr) + " is not 8-byte aligned");
        }
        if (ram.contains(physAddr, 8)) {
            return ram.slice(physAddr, 8);
        }
        PhysicalRegion r = claim(physAddr, 8);
        MemorySegment v = r.atomicView(physAddr - r.base(), 8);
        if (v == null) {
            throw new ErrnoException(Errno.EOPNOTSUPP, r.name() + " does not support atomic operations at 0x" + Long.toHexString(physAddr));
        }
        return v;
    }

    private PhysicalRegion claim(long physAddr, long length) {
        PhysicalRegion r = regionAt(physAddr);
        if (r == null || physAddr - r.base() + length > r.size()) {
            throw new ErrnoException(Errno.EFAULT, "no RAM or device memory decodes 0x" + Long.toHexString(physAddr) + "+" + length);
        }
        return r;
    }
}
