package dev.dmaplane.vfio.impl.iommufd;

import dev.dmaplane.device.Device;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.Importer;
import dev.dmaplane.dmabuf.PhysVec;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.iommu.IoPageTable;
import dev.dmaplane.vfio.impl.IoPageStore;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The pages of a dma-buf an IOAS maps ({@code iopt_alloc_dmabuf_pages} and {@code iopt_map_dmabuf},
 * drivers/iommu/iommufd/pages.c): a dynamic attachment of iommufd's global device with revoke-only importer ops
 * ({@code iopt_dmabuf_attach_revoke_ops}), the buffer's physical ranges ({@code vfio_pci_dma_buf_iommufd_map} in the
 * kernel; here any exporter with {@link dev.dmaplane.dmabuf.Exporter.PhysOp}, so a GPU's VRAM export too, beyond
 * today's kernel), and a reference to the buffer. The ranges are taken and the pages are handed to the IOAS under
 * the buffer's reservation lock, so a revoke either comes before (the exporter answers {@code ENODEV}) or finds the
 * pages ({@code iopt_revoke_notify}: every domain mapping goes, the area stays until the user unmaps it; nothing
 * is mapped again). Nothing is pinned or charged to {@code locked_vm}: the memory is the exporter's.
 */
final class DmabufPages {
    private static final long PAGE = IoPageTable.PAGE_SIZE;

    /** How the pages go into an IOAS once they exist, under the buffer's reservation lock. */
    @FunctionalInterface
    interface Install {
        void install(IoPageStore.Pages pages);
    }

    private DmabufPages() {
    }

    /** Longest a map waits for the buffer's KERNEL fences, as {@code ib_umem_dmabuf}'s model does. */
    static final Duration FENCE_TIMEOUT = Duration.ofSeconds(10);

    /**
     * Attaches {@code importer} to {@code buf}, takes {@code [start, start + length)} of its physical ranges and hands
     * the pages (holding the attachment and one reference to the buffer, both let go at their release) to
     * {@code install}.
     *
     * @throws ErrnoException {@code EINVAL} for a range outside the buffer; {@code ETIMEDOUT} when the buffer's KERNEL
     *                        fences do not signal within {@link #FENCE_TIMEOUT}; the exporter's attach errno
     *                        ({@code EOPNOTSUPP}, {@code ENODEV} when revoked); {@link DmaBuf#physRanges}'s
     *                        ({@code EOPNOTSUPP} for an exporter without physical ranges, {@code ENODEV} revoked);
     *                        {@code install}'s; nothing is kept then
     */
    static void map(DmaBuf buf, Device importer, long start, long length, boolean writable, String who,
                    Install install) {
        String what = "IOMMU_IOAS_MAP_FILE of dma-buf " + buf.ino() + " (" + buf.exporterName() + ")";
        if (Long.compareUnsigned(start, buf.size()) >= 0 || Long.compareUnsigned(length, buf.size() - start) > 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: %#x bytes from %#x are past its %#x bytes", what,
                    length, start, buf.size()));
        }
        AtomicReference<IoPageStore.Pages> holder = new AtomicReference<>();
        Attachment a = buf.attach(importer, Importer.physical(att -> {
            IoPageStore.Pages p = holder.get();
            if (p != null) {
                p.revoke("dma-buf " + buf.ino() + " revoked by " + buf.exporterName(), who);
            }
        }));
        buf.get();
        boolean done = false;
        try {
            buf.resv().lock();
            try {
                long[] phys = frames(buf.physRanges(a), start, length, what);
                // a clear or a move of the buffer by its exporter ends before any DMA through the IOAS: importers
                // always wait for the KERNEL fences (include/linux/dma-resv.h), as ib_umem_dmabuf_map_pages does
                if (!buf.resv().await(ResvUsage.KERNEL, FENCE_TIMEOUT)) {
                    throw new ErrnoException(Errno.ETIMEDOUT, what + ": its KERNEL fences (a clear or a move) did not"
                            + " signal within " + FENCE_TIMEOUT);
                }
                IoPageStore.Pages pages = new IoPageStore.Pages(phys, writable, false, dirty -> release(buf, a));
                holder.set(pages);
                install.install(pages);
                done = true;
            } finally {
                buf.resv().unlock();
            }
        } finally {
            if (!done) {
                holder.set(null);
                release(buf, a);
            }
        }
    }

    /** The page frames of {@code [start, start + length)} of the ranges, in order. */
    private static long[] frames(List<PhysVec> ranges, long start, long length, String what) {
        long[] out = new long[(int) (length / PAGE)];
        long skip = start;
        int n = 0;
        for (PhysVec r : ranges) {
            if ((r.paddr() & (PAGE - 1)) != 0 || (r.length() & (PAGE - 1)) != 0) {
                throw new ErrnoException(Errno.EINVAL, String.format("%s: range %#x+%#x is not page-aligned", what,
                        r.paddr(), r.length()));
            }
            for (long off = 0; off < r.length() && n < out.length; off += PAGE) {
                if (skip > 0) {
                    skip -= PAGE;
                    continue;
                }
                out[n++] = r.paddr() + off;
            }
        }
        return out;
    }

    /** {@code iopt_release_pages} of a dma-buf: detach and drop the reference, without the reservation lock. */
    private static void release(DmaBuf buf, Attachment a) {
        try {
            buf.detach(a);
        } finally {
            buf.put();
        }
    }
}
