package dev.dmaplane.mem;

import org.osgi.annotation.versioning.ProviderType;

import java.lang.foreign.MemorySegment;

/**
 * A range of the physical address space that is not RAM but answers memory transactions: a device's memory BAR
 * (the target of peer-to-peer DMA), {@code struct resource} of type IORESOURCE_MEM.
 */
@ProviderType
public interface PhysicalRegion {
    /** Name for listings, e.g. {@code 0000:03:00.0 BAR2}. */
    String name();

    /** First physical (bus) address. */
    long base();

    /** Size in bytes. */
    long size();

    /** Reads {@code dst.byteSize()} bytes at {@code offset} into the region. */
    void read(long offset, MemorySegment dst);

    /** Writes {@code src} at {@code offset} into the region. */
    void write(long offset, MemorySegment src);

    /**
     * A view of {@code length} bytes at {@code offset} that supports atomic access, or {@code null} when the
     * region cannot serve atomics (MMIO registers).
     */
    MemorySegment atomicView(long offset, long length);

    /**
     * Whether the region answers requests now; a BAR's function does only while its Memory Space Enable is set, and
     * handles requests meanwhile as Unsupported (PCIe Base Spec 7.5.1.1.3). Always by default.
     */
    default boolean decodes() {
        return true;
    }
}
