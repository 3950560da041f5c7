package dev.dmaplane.accel.impl;

import dev.dmaplane.accel.Placement;
import dev.dmaplane.accel.spi.Aperture;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.device.Device;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufMapping;
import dev.dmaplane.dmabuf.Importer;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.ResvUsage;

import java.lang.foreign.MemorySegment;
import java.time.Duration;
import java.util.List;

/**
 * A buffer object backed by another exporter's dma-buf ({@code drm_gem_prime_import_dev} with a dynamic attachment,
 * as amdgpu imports): the attachment of the device's DMA device, mapped for the GPU as {@link Aperture#SYSTEM} runs
 * of the mapping's DMA addresses. The exporter's {@code moveNotify} marks it invalidated; {@link #remap} maps again
 * ({@code amdgpu_dma_buf_move_notify} then the next validate).
 */
final class ImportedPages implements Backing {
    private final DmaBuf dmabuf;
    private final Attachment attachment;
    private final Duration timeout;
    private volatile DmaBufMapping mapping;
    private volatile boolean invalidated;
    private boolean freed;

    private ImportedPages(DmaBuf dmabuf, Attachment attachment, Duration timeout) {
        this.dmabuf = dmabuf;
        this.attachment = attachment;
        this.timeout = timeout;
    }

    /**
     * Takes a reference on {@code dmabuf}, attaches {@code device} dynamically (no peer-to-peer: host memory
     * through the IOMMU) and maps it; on failure undoes all of it and rethrows.
     */
    static ImportedPages attach(DmaBuf dmabuf, Device device, Importer.MoveNotify onMove, Duration timeout) {
        dmabuf.get();
        Attachment a;
        try {
            a = dmabuf.attach(device, new Importer(false, onMove));
        } catch (RuntimeException e) {
            dmabuf.put();
            throw e;
        }
        ImportedPages p = new ImportedPages(dmabuf, a, timeout);
        try {
            p.mapNow();
        } catch (RuntimeException e) {
            dmabuf.detach(a);
            dmabuf.put();
            throw e;
        }
        return p;
    }

    /** Maps (again), with the reservation lock, and waits for the exporter's KERNEL fences (a pending move). */
    private void mapNow() {
        dmabuf.resv().lock();
        try {
            DmaBufMapping old = mapping;
            if (old != null) {
                dmabuf.unmap(old);
                mapping = null;
            }
            mapping = dmabuf.map(attachment, DmaDirection.BIDIRECTIONAL);
            invalidated = false;
        } finally {
            dmabuf.resv().unlock();
        }
        ErrnoException.check(dmabuf.resv().await(ResvUsage.KERNEL, timeout), Errno.ETIME, "the move of imported dma-buf "
                + dmabuf.ino() + " did not finish in " + timeout);
    }

    DmaBuf dmabuf() {
        return dmabuf;
    }

    /** The exporter announced a move: the runs are about to go stale. */
    void invalidate() {
        invalidated = true;
    }

    boolean isInvalidated() {
        return invalidated;
    }

    /** Maps again after a move; the caller then rewrites the page tables. Without the device's placement lock. */
    void remap() {
        mapNow();
    }

    @Override
    public long size() {
        return dmabuf.size();
    }

    @Override
    public Placement placement() {
        return Placement.HOST;
    }

    @Override
    public List<GpuRun> runs() {
        return Backing.systemRuns(mapping.segments());
    }

    @Override
    public boolean cpuVisible() {
        return true;
    }

    @Override
    public void read(long offset, MemorySegment dst) {
        dmabuf.resv().lock();
        try {
            dmabuf.cpuRead(offset, dst);
        } finally {
            dmabuf.resv().unlock();
        }
    }

    @Override
    public void write(long offset, MemorySegment src) {
        dmabuf.resv().lock();
        try {
            dmabuf.cpuWrite(offset, src);
        } finally {
            dmabuf.resv().unlock();
        }
    }

    /** Unmaps, detaches and drops the reference ({@code drm_prime_gem_destroy}). */
    @Override
    public void free() {
        synchronized (this) {
            if (freed) {
                return;
            }
            freed = true;
        }
        dmabuf.resv().lock();
        try {
            dmabuf.unmap(mapping);
        } finally {
            dmabuf.resv().unlock();
        }
        dmabuf.detach(attachment);
        dmabuf.put();
    }

    @Override
    public String toString() {
        return "imported dma-buf " + dmabuf.ino() + " (" + dmabuf.exporterName() + ")";
    }
}
