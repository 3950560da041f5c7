package dev.dmaplane.dma.impl;

import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.dma.SgAppendTable;
import dev.dmaplane.dma.SgEntry;
import dev.dmaplane.dma.SgTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.ArrayList;
import java.util.List;

/**
 * The direct back end of one device's DMA API ({@code kernel/dma/direct.c}): the device reaches memory at its
 * physical address when its mask covers it, else a streaming mapping bounces through {@link Swiotlb}.
 */
final class DirectDma {
    private final DeviceDma dma;

    DirectDma(DeviceDma dma) {
        this.dma = dma;
    }

    /**
     * Maps one physically contiguous range: its physical address when the mask reaches it, else a swiotlb bounce for
     * RAM ({@code SINGLE}); device memory ({@code RESOURCE}) is never bounced ({@code dma_direct_map_page}).
     */
    Mapping map(Mapping.Type type, long physAddr, long size, DmaDirection direction, Throwable site) {
        long mask = dma.dmaMask();
        if (fitsMask(physAddr, size, mask)) {
            return Mapping.direct(type, physAddr, size, direction, site);
        }
        if (type == Mapping.Type.RESOURCE) {
            throw new ErrnoException(Errno.EIO, dma.deviceName() + ": resource 0x" + Long.toHexString(physAddr) + "+" + size
                    + " is beyond DMA mask 0x" + Long.toHexString(mask) + ", and resources are never bounced");
        }
        return Mapping.bounced(type, bounce(physAddr, size, mask), size, direction, site);
    }

    /**
     * Maps each entry at its physical address or through a bounce, and merges the device-side segments that
     * continue each other up to {@code maxSegment} ({@code dma_direct_map_sg}); on failure frees the bounces taken.
     */
    Mapping mapSg(SgTable table, DmaDirection direction, long maxSegment, long boundaryMask, Throwable site) {
        long mask = dma.dmaMask();
        List<Swiotlb.Bounce> bounces = new ArrayList<>();
        SgAppendTable<DmaSegment> segs = SgAppendTable.dmaSegments(maxSegment, boundaryMask);
        try {
            for (SgEntry e : table.entries()) {
                long dmaAddr;
                if (fitsMask(e.physAddr(), e.length(), mask)) {
                    dmaAddr = e.physAddr();
                } else {
                    Swiotlb.Bounce b = bounce(e.physAddr(), e.length(), mask);
                    bounces.add(b);
                    dmaAddr = b.tlbAddr();
                }
                segs.append(dmaAddr, e.length());
            }
        } catch (RuntimeException ex) {
            Swiotlb swiotlb = dma.sys.swiotlb;
            for (Swiotlb.Bounce b : bounces) {
                swiotlb.unmap(b);
            }
            throw ex;
        }
        return Mapping.directSg(new MappedSg(table, direction, segs.toList()), bounces, site);
    }

    /** The bus address of a coherent buffer at {@code phys}: the device must reach it without bouncing. */
    long coherentAddress(long phys, long len) {
        long mask = dma.dmaMask();
        if (!fitsMask(phys, len, mask)) {
            throw new ErrnoException(Errno.ENOMEM, dma.deviceName() + ": no memory below DMA mask 0x" + Long.toHexString(mask) + " for a coherent buffer");
        }
        return phys;
    }

    /** Frees the bounces of {@code m}, copying back first what the device may have written ({@code swiotlb_tbl_unmap_single}). */
    void unmap(Mapping m, boolean copyBack) {
        for (Swiotlb.Bounce b : m.bounces()) {
            if (copyBack && (m.direction() == DmaDirection.FROM_DEVICE || m.direction() == DmaDirection.BIDIRECTIONAL)) {
                dma.sys.swiotlb.syncForCpu(b);
            }
            dma.sys.swiotlb.unmap(b);
        }
    }

    /** Syncs every bounce of {@code m} ({@code dma_direct_sync_sg_for_cpu} / {@code _for_device}). */
    void syncAll(Mapping m, boolean toCpu) {
        for (Swiotlb.Bounce b : m.bounces()) {
            sync(b, toCpu);
        }
    }

    /** Syncs the part of each bounce of {@code m} inside {@code [dmaAddress, dmaAddress+size)} ({@code dma_direct_sync_single_for_cpu}). */
    void syncRange(Mapping m, long dmaAddress, long size, boolean toCpu) {
        for (Swiotlb.Bounce b : m.bounces()) {
            long lo = Math.max(dmaAddress, b.tlbAddr());
            long hi = Math.min(dmaAddress + size, b.tlbAddr() + b.size());
            if (lo < hi) {
                sync(new Swiotlb.Bounce(lo, b.origAddr() + (lo - b.tlbAddr()), hi - lo, b.firstSlot(), b.nslots()), toCpu);
            }
        }
    }

    private void sync(Swiotlb.Bounce b, boolean toCpu) {
        if (toCpu) {
            dma.sys.swiotlb.syncForCpu(b);
        } else {
            dma.sys.swiotlb.syncForDevice(b);
        }
    }

    private Swiotlb.Bounce bounce(long physAddr, long size, long mask) {
        if (dma.sys.swiotlb == null) {
            throw new ErrnoException(Errno.EIO, dma.deviceName() + ": buffer at 0x" + Long.toHexString(physAddr) + "+" + size
                    + " is beyond DMA mask 0x" + Long.toHexString(mask) + " and there is no swiotlb");
        }
        return dma.sys.swiotlb.map(physAddr, size, mask);
    }

    /** Whether {@code [addr, addr+size)} lies under {@code mask} ({@code dma_capable}; masks are unsigned, all-ones covers everything). */
    static boolean fitsMask(long addr, long size, long mask) {
        return Long.compareUnsigned(addr + size - 1, mask) <= 0;
    }
}
