package dev.dmaplane.rdma.spi;

import dev.dmaplane.dma.DmaSegment;
import org.osgi.annotation.versioning.ProviderType;

import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * A checked, translated range of a memory region or window, valid until closed: the bus addresses the HCA may
 * use, and accessors that move real bytes through the device's {@link dev.dmaplane.dma.BusMaster} (so the IOMMU
 * checks every access). While a lease is open the region cannot be deregistered and, for an on-demand region,
 * its pages cannot be invalidated: keep leases short, never call into the address space while holding one, never
 * hold two leases of one on-demand region at once (the second could wait for an invalidation that waits for the
 * first), and close a lease on the thread that took it. Offsets count from the start of the leased range. The
 * accessors throw {@link dev.dmaplane.dma.DmaFaultException} when the IOMMU refuses an access.
 */
@ProviderType
public interface DmaLease extends AutoCloseable {
    /** Bytes leased. */
    long length();

    /**
     * Whether what granted this lease holds for as long as it is open: pinned host memory ({@code ib_umem_get})
     * reached through a region's own key, whose translation and checks only a deregistration or re-registration
     * can end, and those wait for the lease. Such a lease may stay open while the same thread takes others (a
     * cut-through transfer into another region) and may serve later accesses of the same key, QP and range within
     * one pass of the HCA's engine. On-demand and dma-buf leases are not stable (see above), nor is one through a
     * memory window, which an invalidation may end while it is open.
     */
    boolean stable();

    /** Bus ranges covering the lease, in order. */
    List<DmaSegment> segments();

    /** Device reads {@code dst.byteSize()} bytes at {@code offset}. */
    void read(long offset, MemorySegment dst);

    /** Device writes {@code src} at {@code offset}. */
    void write(long offset, MemorySegment src);

    /**
     * Cut-through: this lease's device reads {@code length} bytes at {@code offset} and {@code target}'s device
     * writes them at {@code targetOffset}, without a staging buffer ({@link dev.dmaplane.dma.BusMaster#copyTo}).
     * Both leases must be open.
     */
    void copyTo(long offset, DmaLease target, long targetOffset, long length);

    /**
     * A chain of cut-through copies from this lease into {@code target} ({@link
     * dev.dmaplane.dma.BusMaster#copyTo(long, dev.dmaplane.dma.BusMaster, long, long[], long[], int[], int, int)}):
     * copy {@code i} moves {@code lengths[i]} bytes at {@code offsets[i]} of this lease to {@code targetOffsets[i]}
     * of {@code target}. Runs copies {@code from} up to {@code to} in order and returns how many it ran, at least
     * one; the caller calls again from where it stopped. Only the first copy of a call is ever refused, so a caller
     * that catches a refusal knows that the copies before it were done and none after it.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for an empty {@code [from, to)}, or a copy outside
     *                                           either lease (none of the chain's bytes moved)
     */
    int copyTo(long[] offsets, DmaLease target, long[] targetOffsets, int[] lengths, int from, int to);

    /** Device 8-byte compare-and-swap at {@code offset} (8-byte aligned address); returns the old value. */
    long compareAndSwap(long offset, long compare, long swap);

    /** Device 8-byte fetch-and-add at {@code offset}; returns the old value. */
    long fetchAndAdd(long offset, long add);

    /**
     * This {@link #stable stable} lease turned into a reference to the memory it translates, as siw keeps
     * {@code wqe->mem[0]} from a READ's first response segment to its end ({@code siw_mem_put}): the returned lease
     * reaches the same bytes but no longer holds off deregistration or re-registration, which go on at once while the
     * pages stay pinned and mapped until it is closed, so it may be kept while its thread waits. This lease is closed.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a closed lease or one that is not stable
     */
    DmaLease retain();

    /** Ends the lease. Idempotent. */
    @Override
    void close();
}
