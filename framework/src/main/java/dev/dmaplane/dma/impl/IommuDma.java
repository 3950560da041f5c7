package dev.dmaplane.dma.impl;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.dma.SgAppendTable;
import dev.dmaplane.dma.SgEntry;
import dev.dmaplane.dma.SgTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IoPageTable;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.mem.HostMemory;

/**
 * The IOMMU back end of one device's DMA API ({@code drivers/iommu/dma-iommu.c}): IOVA allocation under the mask
 * and the page-table updates that make a buffer reachable through the device's translating domain.
 */
final class IommuDma {
    private static final long PAGE_MASK = HostMemory.PAGE_SIZE - 1;
    private static final long DAC_BOUNDARY = 1L << 32;

    private final DeviceDma dma;

    IommuDma(DeviceDma dma) {
        this.dma = dma;
    }

    /** Maps one physically contiguous range through fresh IOVA ({@code iommu_dma_map_page}). */
    Mapping map(IommuDomain domain, Mapping.Type type, long physAddr, long size, DmaDirection direction, Throwable site) {
        long off = physAddr & PAGE_MASK;
        long len = align(off + size);
        long iova = mapRange(domain, physAddr - off, len, prot(direction));
        return Mapping.translated(type, iova + off, size, direction, domain, iova, len, site);
    }

    /**
     * Maps every entry of {@code table} into one IOVA range, entry after entry from page boundaries, and merges the
     * device-side segments that continue each other up to {@code maxSegment} ({@code iommu_dma_map_sg}).
     */
    Mapping mapSg(IommuDomain domain, SgTable table, DmaDirection direction, long maxSegment, long boundaryMask, Throwable site) {
        long total = 0;
        for (SgEntry e : table.entries()) {
            total += align((e.physAddr() & PAGE_MASK) + e.length());
        }
        long iova = allocIova(domain, total);
        IoPageTable pt = domain.pageTable();
        long cursor = iova;
        SgAppendTable<DmaSegment> segs = SgAppendTable.dmaSegments(maxSegment, boundaryMask);
        int prot = prot(direction);
        try {
            for (SgEntry e : table.entries()) {
                long off = e.physAddr() & PAGE_MASK;
                long len = align(off + e.length());
                pt.map(cursor, e.physAddr() - off, len, prot);
                // an entry joins the segment before it only from a page boundary, where the one before ended: each
                // entry starts a page of its own, so bus-address contiguity says exactly that
                segs.append(cursor + off, e.length());
                cursor += len;
            }
        } catch (RuntimeException ex) {
            if (cursor > iova) {
                pt.unmap(iova, cursor - iova);
            }
            domain.iovaAllocator().free(iova, total);
            throw ex;
        }
        return Mapping.translatedSg(new MappedSg(table, direction, segs.toList()), domain, iova, total, site);
    }

    /** Maps {@code [phys, phys+len)} read-write for a coherent buffer ({@code iommu_dma_alloc}); returns the IOVA. */
    long mapCoherent(IommuDomain domain, long phys, long len) {
        return mapRange(domain, phys, len, IoPageTable.PROT_READ | IoPageTable.PROT_WRITE);
    }

    /** Allocates IOVA for {@code len} bytes and maps them to {@code phys}; on failure frees the IOVA again. */
    private long mapRange(IommuDomain domain, long phys, long len, int prot) {
        long iova = allocIova(domain, len);
        try {
            domain.pageTable().map(iova, phys, len, prot);
        } catch (RuntimeException e) {
            domain.iovaAllocator().free(iova, len);
            throw e;
        }
        return iova;
    }

    /** Removes the translations of {@code m} but keeps its IOVA until the owner unmaps (a revoke). */
    void revoke(Mapping m) {
        m.domain().pageTable().unmap(m.iova(), m.iovaLength());
    }

    /** Undoes {@code m}: its translations unless a revoke removed them already, then its IOVA ({@code __iommu_dma_unmap}). */
    void unmap(Mapping m, boolean wasRevoked) {
        if (!wasRevoked) {
            m.domain().pageTable().unmap(m.iova(), m.iovaLength());
        }
        m.domain().iovaAllocator().free(m.iova(), m.iovaLength());
    }

    /** Undoes {@link #mapCoherent}. */
    void unmapRange(IommuDomain domain, long iova, long len) {
        domain.pageTable().unmap(iova, len);
        domain.iovaAllocator().free(iova, len);
    }

    /**
     * Allocates IOVA under the device's mask. As {@code iommu_dma_alloc_iova} does for PCI devices, a device that
     * can address more than 32 bits still gets a 32-bit IOVA while those last (SAC before DAC).
     */
    private long allocIova(IommuDomain domain, long len) {
        long mask = dma.dmaMask();
        // the mask is the last address the device reaches (iommu_dma_alloc_iova's inclusive dma_limit), compared
        // unsigned and capped by the aperture before the exclusive limit is formed: mask + 1 overflows for
        // DMA_BIT_MASK(64) and for 2^63 - 1
        long last = Long.compareUnsigned(mask, IommuDomain.APERTURE_END - 1) < 0 ? mask : IommuDomain.APERTURE_END - 1;
        long limit = last + 1;
        if (limit > DAC_BOUNDARY) {
            try {
                return domain.iovaAllocator().alloc(len, DAC_BOUNDARY);
            } catch (ErrnoException full) {
                if (full.errno() != Errno.ENOMEM) {
                    throw full;
                }
            }
        }
        return domain.iovaAllocator().alloc(len, limit);
    }

    /** The page-table permissions of a direction ({@code dma_info_to_prot}). */
    private static int prot(DmaDirection d) {
        return (d.deviceReads() ? IoPageTable.PROT_READ : 0) | (d.deviceWrites() ? IoPageTable.PROT_WRITE : 0);
    }

    static long align(long n) {
        return (n + PAGE_MASK) & ~PAGE_MASK;
    }
}
