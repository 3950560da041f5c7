package dev.dmaplane.dma;

import java.lang.foreign.MemorySegment;

/**
 * The device side of DMA: memory reads and writes a device issues with its requester ID, translated by its
 * IOMMU domain (or taken as physical addresses when it has none). An access to an address the domain does not
 * map, or a write to a read-only mapping, is refused as the IOMMU would: the access fails with
 * {@link DmaFaultException} and a fault is recorded; no byte is transferred.
 */
public interface BusMaster {
    /** Device reads {@code dst.byteSize()} bytes at bus address {@code busAddr} into {@code dst}. */
    void read(long busAddr, MemorySegment dst);

    /** Device writes all of {@code src} to bus address {@code busAddr}. */
    void write(long busAddr, MemorySegment src);

    /** Device reads the 8-byte little-endian value at {@code busAddr}. */
    long readLong(long busAddr);

    /** Device writes an 8-byte little-endian value at {@code busAddr}. */
    void writeLong(long busAddr, long value);

    /**
     * PCIe AtomicOp CAS on an 8-byte aligned address: returns the old value, stores {@code swap} if it equaled
     * {@code compare}. Needs read and write permission.
     */
    long compareAndSwap(long busAddr, long compare, long swap);

    /** PCIe AtomicOp FetchAdd on an 8-byte aligned address: returns the old value. */
    long fetchAndAdd(long busAddr, long add);
}
