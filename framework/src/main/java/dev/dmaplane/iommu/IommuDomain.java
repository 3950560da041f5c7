package dev.dmaplane.iommu;

import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.dma.FaultReason;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;

import java.util.BitSet;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;

/**
 * An IOMMU domain ({@code struct iommu_domain}): one I/O address space that groups attach to. Paging domains own
 * a page table, with dirty tracking ({@code domain->dirty_ops}); DMA domains also own an IOVA allocator for the
 * DMA API.
 */
public final class IommuDomain {
    /** The IOVA space a domain covers: 48 bits, as a 4-level page table. */
    public static final long APERTURE_END = 1L << 48;
    /** IOVA 0 is never handed out; the DMA API's IOVAs start at one granule. */
    public static final long APERTURE_START = 1L << 12;

    private final int id;
    private final IommuDomainType type;
    private final Iommu iommu;
    private final Tracer tracer;
    private final IoPageTable pageTable;
    private final IovaAllocator iovad;
    private final List<IommuGroup> groups = new CopyOnWriteArrayList<>();
    private volatile Consumer<IommuFault> faultHandler;
    private volatile boolean freed;
    /** {@code set_dirty_tracking} enabled: write translations set the dirty bit of their leaves. */
    private volatile boolean dirtyTracking;
    /** Translation-cache flushes other than unmaps (dirty bits cleared, tracking enabled); part of the generation. */
    private volatile long dirtyFlushes;

    IommuDomain(int id, IommuDomainType type, Iommu iommu, Tracer tracer) {
        this.id = id;
        this.type = Objects.requireNonNull(type, "type");
        this.iommu = iommu;
        this.tracer = tracer;
        this.pageTable = type.paging() ? new IoPageTable() : null;
        this.iovad = type == IommuDomainType.DMA ? new IovaAllocator(IoPageTable.PAGE_SIZE, APERTURE_START, APERTURE_END) : null;
    }

    public int id() {
        return id;
    }

    public IommuDomainType type() {
        return type;
    }

    /** Name for listings, e.g. {@code dma-3}. */
    public String name() {
        return type.name().toLowerCase() + "-" + id;
    }

    /** Groups attached to this domain now. */
    public List<IommuGroup> groups() {
        return List.copyOf(groups);
    }

    /**
     * Maps {@code [iova, iova+size)} to physical {@code [phys, phys+size)} with {@code prot}
     * ({@code iommu_map}). {@code EINVAL} on a non-paging domain or misaligned input; {@code EEXIST} if any part
     * is mapped already, leaving the domain unchanged.
     */
    public void map(long iova, long phys, long size, int prot, String who) {
        requirePaging("map");
        pageTable.map(iova, phys, size, prot);
        tracer.emit(TraceKind.MAP, who, iova, size, name() + " -> phys 0x" + Long.toHexString(phys) + protText(prot));
    }

    /** Unmaps a range ({@code iommu_unmap}); returns the bytes that were mapped in it. */
    public long unmap(long iova, long size, String who) {
        requirePaging("unmap");
        long n = pageTable.unmap(iova, size);
        tracer.emit(TraceKind.UNMAP, who, iova, size, name() + " unmapped " + n);
        return n;
    }

    /**
     * A value that changes after every unmap ({@code iommu_iotlb_sync} with the ATS invalidations it sends): an entry
     * a device's address translation cache (PCIe ATS) made under an older value must not be used any more.
     */
    public long iotlbGeneration() {
        return type.paging() ? pageTable.unmapCount() + dirtyFlushes : 0;
    }

    /**
     * {@code domain->dirty_ops->set_dirty_tracking}, as {@code iopt_set_dirty_tracking} in
     * {@code drivers/iommu/iommufd/io_pagetable.c} drives it: enabling first clears every dirty bit (so no write of
     * an earlier period is reported) and flushes the translation caches (so no write translation cached before
     * goes on writing without setting the dirty bit); from then on every write translation sets the dirty bit of
     * its leaf before a device's translation cache may hold it. Enabling twice, or disabling, keeps the bits.
     *
     * @throws ErrnoException {@code EOPNOTSUPP} for a domain without a page table or on an IOMMU without dirty
     *                        tracking (no {@code dirty_ops}), {@code ENODEV} once freed
     */
    public synchronized void setDirtyTracking(boolean enable) {
        requireDirtyOps("set_dirty_tracking");
        if (enable && !dirtyTracking) {
            pageTable.readDirty(0, APERTURE_END, APERTURE_END, true);
            dirtyTracking = true;
            dirtyFlushes++;
        } else if (!enable) {
            dirtyTracking = false;
        }
    }

    /** Whether {@link #setDirtyTracking} enabled dirty tracking. */
    public boolean dirtyTracking() {
        return dirtyTracking;
    }

    /**
     * {@code iommu_read_and_clear_dirty} over {@code [iova, iova + length)} ({@code read_and_clear_dirty} with an
     * {@code iommu_dirty_bitmap}, checked as {@code iommufd_check_iova_range} does): bit {@code n} of the answer is
     * set when a device wrote into the {@code pageSize} page at {@code iova + n * pageSize} through a leaf that was
     * clean (a 2 MiB block marks all its pages). Unless {@code noClear} ({@code IOMMU_DIRTY_NO_CLEAR}), the bits
     * read are cleared and the translation caches flushed ({@code iommu_iotlb_sync}), so the next write to such a
     * page sets its bit again; a write in flight while the bits are cleared may be reported in this bitmap or the
     * next.
     *
     * @throws ErrnoException {@code EOPNOTSUPP} for a domain without a page table; {@code EINVAL} when tracking is
     *                        off (as the VT-d driver answers a read with a bitmap), for a {@code pageSize} that is not
     *                        a power of two of at least 4 KiB, an {@code iova} or {@code length} not a multiple of
     *                        it, a {@code length} below 1, or a bitmap of more than 2^31 - 1 bits; {@code ERANGE}
     *                        past the 48-bit aperture; {@code ENODEV} once freed
     */
    public BitSet readAndClearDirty(long iova, long length, long pageSize, boolean noClear) {
        requireDirtyOps("read_and_clear_dirty");
        if (pageSize < IoPageTable.PAGE_SIZE || Long.bitCount(pageSize) != 1) {
            throw new ErrnoException(Errno.EINVAL, "dirty bitmap page size 0x" + Long.toHexString(pageSize)
                    + " is not a power of two of at least 4 KiB");
        }
        if (length <= 0 || ((iova | length) & (pageSize - 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, "dirty bitmap range 0x" + Long.toHexString(iova) + "+0x"
                    + Long.toHexString(length) + " is empty or not aligned to its page size 0x"
                    + Long.toHexString(pageSize));
        }
        if (length / pageSize > Integer.MAX_VALUE) {
            throw new ErrnoException(Errno.EINVAL, "dirty bitmap of " + length / pageSize + " pages is too large");
        }
        synchronized (this) {
            if (!dirtyTracking) {
                throw new ErrnoException(Errno.EINVAL, "read_and_clear_dirty of domain " + name()
                        + ": dirty tracking is off");
            }
            BitSet dirty = pageTable.readDirty(iova, length, pageSize, !noClear);
            if (!noClear) {
                dirtyFlushes++;
            }
            return dirty;
        }
    }

    /** The physical address {@code iova} translates to, or -1 ({@code iommu_iova_to_phys}). */
    public long iovaToPhys(long iova) {
        return switch (type) {
            case IDENTITY -> iova;
            case BLOCKED -> -1;
            case DMA, UNMANAGED -> {
                long leaf = pageTable.walk(iova);
                yield leaf == 0 ? -1 : IoPageTable.physOf(leaf, iova);
            }
        };
    }

    /**
     * Translates a device access of {@code length} bytes at {@code iova} that stays within one page, checking
     * permission: what the IOMMU hardware does on every transaction.
     *
     * @return the physical address
     * @throws DmaFaultException when the access is refused; a fault is recorded first
     */
    public long translate(String device, long iova, long length, boolean write) {
        switch (type) {
            case IDENTITY:
                return iova;
            case BLOCKED:
                throw fault(device, iova, write, FaultReason.BLOCKED, "domain " + name() + " blocks all DMA");
            default:
                break;
        }
        return IoPageTable.physOf(leafFor(device, iova, write), iova);
    }

    /**
     * The page-table leaf of a paging domain that lets {@code device} access {@code iova}; faults otherwise. A write
     * under dirty tracking sets the leaf's dirty bit first.
     */
    private long leafFor(String device, long iova, boolean write) {
        if (iova < 0 || iova >= APERTURE_END) {
            throw fault(device, iova, write, FaultReason.OUT_OF_RANGE, "outside the 48-bit aperture");
        }
        long leaf = pageTable.walk(iova);
        if (leaf == 0) {
            throw fault(device, iova, write, FaultReason.NOT_MAPPED, "not mapped");
        }
        int prot = IoPageTable.protOf(leaf);
        if (write ? (prot & IoPageTable.PROT_WRITE) == 0 : (prot & IoPageTable.PROT_READ) == 0) {
            throw fault(device, iova, write, FaultReason.PERMISSION, write ? "write to a read-only mapping" : "read of a write-only mapping");
        }
        if (write && dirtyTracking && !IoPageTable.dirtyOf(leaf)) {
            leaf = pageTable.markDirty(iova);
            if (leaf == 0) {
                throw fault(device, iova, true, FaultReason.NOT_MAPPED, "not mapped");
            }
        }
        return leaf;
    }

    /**
     * {@link #translate} of the first byte, and how many of {@code maxLength} bytes from {@code iova} map to
     * physically contiguous memory with the needed permission: the rest of the first page-table leaf, and the
     * following leaves as long as they continue it (what a device's translation cache may hold as one range).
     */
    public Run translateRun(String device, long iova, long maxLength, boolean write) {
        if (!type.paging()) {
            long n = Math.min(maxLength, IoPageTable.PAGE_SIZE - (iova & (IoPageTable.PAGE_SIZE - 1)));
            return new Run(translate(device, iova, n, write), n);
        }
        long leaf = leafFor(device, iova, write);
        long sz = IoPageTable.leafSize(leaf);
        long phys = IoPageTable.physOf(leaf, iova);
        long n = sz - (iova & (sz - 1));
        while (n < maxLength && iova + n < APERTURE_END) {
            long next = pageTable.walk(iova + n);
            if (next == 0 || IoPageTable.physOf(next, iova + n) != phys + n) {
                break;
            }
            int p = IoPageTable.protOf(next);
            if (write ? (p & IoPageTable.PROT_WRITE) == 0 : (p & IoPageTable.PROT_READ) == 0) {
                break;
            }
            if (write && dirtyTracking && !IoPageTable.dirtyOf(next)) {
                // the run may go into a translation cache: each of its leaves is dirty before it does
                long marked = pageTable.markDirty(iova + n);
                if (marked == 0 || IoPageTable.physOf(marked, iova + n) != phys + n) {
                    break;
                }
            }
            n += IoPageTable.leafSize(next);
        }
        return new Run(phys, Math.min(maxLength, n));
    }

    /** A translated run: {@code length} bytes at physical address {@code phys}. */
    public record Run(long phys, long length) {
    }

    /** Bytes from {@code iova} to the end of the page-table leaf that maps it (or to the next 4 KiB boundary). */
    public long contiguousFrom(long iova) {
        if (type.paging()) {
            long leaf = pageTable.walk(iova);
            if (leaf != 0) {
                long sz = IoPageTable.leafSize(leaf);
                return sz - (iova & (sz - 1));
            }
        }
        return IoPageTable.PAGE_SIZE - (iova & (IoPageTable.PAGE_SIZE - 1));
    }

    /** Installs a fault handler ({@code iommu_set_fault_handler}); faults are recorded either way. */
    public void setFaultHandler(Consumer<IommuFault> handler) {
        this.faultHandler = handler;
    }

    /** Bytes mapped in the page table (0 for non-paging domains). */
    public long mappedBytes() {
        return type.paging() ? pageTable.mappedBytes() : 0;
    }

    /** The page table of a paging domain, for listings. */
    public IoPageTable pageTable() {
        requirePaging("page table of");
        return pageTable;
    }

    /** The IOVA allocator of a DMA domain ({@code iommu_dma_cookie}'s iovad). */
    public IovaAllocator iovaAllocator() {
        if (iovad == null) {
            throw new ErrnoException(Errno.EINVAL, "domain " + name() + " has no IOVA allocator");
        }
        return iovad;
    }

    public boolean isFreed() {
        return freed;
    }

    void addGroup(IommuGroup g) {
        groups.add(g);
    }

    void removeGroup(IommuGroup g) {
        groups.remove(g);
    }

    void markFreed() {
        freed = true;
    }

    private DmaFaultException fault(String device, long iova, boolean write, FaultReason why, String reason) {
        IommuFault f = new IommuFault(device, id, iova, write, reason, System.nanoTime());
        iommu.recordFault(f);
        Consumer<IommuFault> h = faultHandler;
        if (h != null) {
            h.accept(f);
        }
        return new DmaFaultException(device, iova, write, why, "IOMMU fault in " + name() + ": " + reason);
    }

    private void requireDirtyOps(String op) {
        if (!type.paging()) {
            throw new ErrnoException(Errno.EOPNOTSUPP, op + " of domain " + name()
                    + ": a domain without a page table has no dirty tracking");
        }
        if (!iommu.dirtyTracking()) {
            throw new ErrnoException(Errno.EOPNOTSUPP, op + " of domain " + name()
                    + ": the IOMMU's page tables have no dirty bits");
        }
        if (freed) {
            throw new ErrnoException(Errno.ENODEV, "domain " + name() + " was freed");
        }
    }

    private void requirePaging(String op) {
        if (!type.paging()) {
            throw new ErrnoException(Errno.EINVAL, "cannot " + op + " domain " + name() + ": it has no page table");
        }
        if (freed) {
            throw new ErrnoException(Errno.ENODEV, "domain " + name() + " was freed");
        }
    }

    private static String protText(int prot) {
        return " " + ((prot & IoPageTable.PROT_READ) != 0 ? "r" : "-") + ((prot & IoPageTable.PROT_WRITE) != 0 ? "w" : "-");
    }

    @Override
    public String toString() {
        return name();
    }
}
