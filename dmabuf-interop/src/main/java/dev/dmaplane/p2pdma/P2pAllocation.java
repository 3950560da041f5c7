package dev.dmaplane.p2pdma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;

import java.lang.foreign.MemorySegment;
import java.util.Objects;

/**
 * Peer-to-peer memory a provider handed out ({@code pci_alloc_p2pmem}): a contiguous range of one of its memory
 * BARs, known to devices by its PCI bus address ({@code pci_p2pmem_virt_to_bus}) and to the CPU through the BAR.
 *
 * @param provider   the function the memory belongs to
 * @param bar        the memory BAR it lies in
 * @param busAddress the PCI bus address of the first byte
 * @param size       the bytes asked for (the provider reserves whole pages)
 */
public record P2pAllocation(PciFunction provider, Bar bar, long busAddress, long size) {
    public P2pAllocation {
        Objects.requireNonNull(provider, "provider");
        Objects.requireNonNull(bar, "bar");
        if (size <= 0) {
            throw new ErrnoException(Errno.EINVAL, "p2pmem allocation size " + size + " must be positive");
        }
    }

    /** Where the allocation starts inside its BAR. */
    public long barOffset() {
        return busAddress - bar.address();
    }

    /**
     * The CPU's view of the whole allocation, as a driver's {@code memremap} of the BAR gives it. The provider
     * never lets an allocation of at most {@link Bar.Memory#CHUNK_SIZE} straddle a chunk of device memory, so such
     * an allocation always has one.
     *
     * @throws ErrnoException {@code EINVAL} for a larger allocation: use {@link #read} and {@link #write}
     */
    public MemorySegment cpuView() {
        if (size > Bar.Memory.CHUNK_SIZE) {
            throw new ErrnoException(Errno.EINVAL, provider.bdf() + ": a " + size + "-byte p2pmem allocation spans chunks of"
                    + " device memory and has no single CPU view; use read/write");
        }
        return bar.memory().segment(barOffset(), size);
    }

    /**
     * CPU read of {@code dst.byteSize()} bytes at {@code offset} into the allocation.
     *
     * @throws ErrnoException {@code EFAULT} for a range outside the allocation
     */
    public void read(long offset, MemorySegment dst) {
        check(offset, dst.byteSize());
        bar.memory().read(barOffset() + offset, dst);
    }

    /**
     * CPU write of all of {@code src} at {@code offset} into the allocation.
     *
     * @throws ErrnoException {@code EFAULT} for a range outside the allocation
     */
    public void write(long offset, MemorySegment src) {
        check(offset, src.byteSize());
        bar.memory().write(barOffset() + offset, src);
    }

    private void check(long offset, long length) {
        if (offset < 0 || length < 0 || offset > size || length > size - offset) {
            throw new ErrnoException(Errno.EFAULT, String.format("%s: range %#x+%#x is outside the %#x-byte p2pmem allocation at %#x",
                    provider.bdf(), offset, length, size, busAddress));
        }
    }

    @Override
    public String toString() {
        return String.format("P2pAllocation[%s BAR%d bus %#x size %#x]", provider.bdf(), bar.index(), busAddress, size);
    }
}
