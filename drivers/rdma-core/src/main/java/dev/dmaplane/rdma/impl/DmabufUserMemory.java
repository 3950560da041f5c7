package dev.dmaplane.rdma.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dma.SgAppendTable;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufMapping;
import dev.dmaplane.dmabuf.Importer;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Reservation;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.mem.HostMemory;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * {@code ib_umem_dmabuf} ({@code drivers/infiniband/core/umem_dmabuf.c}): bytes {@code [addr, addr+length)} of a
 * dma-buf, {@code addr} being the offset into it. The region holds a reference to the buffer and one attachment of
 * the HCA's device.
 * <p>
 * <b>Dynamic</b> ({@code ib_umem_dmabuf_get}, the way mlx5 uses it): the attachment is dynamic and allows
 * peer-to-peer addresses; registration maps it once, {@code move_notify} (the exporter holds the reservation lock)
 * takes the region's write lock, so accesses in progress finish first, tells the driver to drop its translations
 * and unmaps, like an ODP invalidation. The next access maps again ({@code ib_umem_dmabuf_map_pages}) under the
 * reservation lock and waits for the exporter's {@code KERNEL} fences (a move's copy) before the HCA touches the new
 * addresses. <b>Pinned</b> ({@code ib_umem_dmabuf_get_pinned}, for HCAs that cannot invalidate): the attachment is
 * pinned and mapped once; the exporter cannot move it, and a {@code move_notify} can only be a revoke.
 * <p>
 * Lock order: the buffer's reservation lock before the region's lock, in {@code move_notify} as in {@link #detach}
 * and in the access path, which takes the reservation lock only while it holds no region lock. The HCA's
 * translation is in {@code PAGE_SIZE} blocks, as mlx5 translates dma-buf regions, since the mapping may change.
 */
final class DmabufUserMemory extends UserMemory {
    private static final Logger LOG = LoggerFactory.getLogger(DmabufUserMemory.class);
    /**
     * How long an access waits for the exporter's {@code KERNEL} fences; the kernel waits without limit, dmaplane
     * as long as the dma-buf core waits for a static importer ({@code ETIMEDOUT} then).
     */
    static final Duration FENCE_TIMEOUT = Duration.ofSeconds(10);

    private final DmaBuf buf;
    private final MrImpl mr;
    private final boolean pinned;
    private Attachment attachment;
    /**
     * The attachment's mapping, or null. Set with the reservation lock held; cleared with it and the region's write
     * lock held, so an access holding the read lock keeps the mapping it found.
     */
    private volatile DmaBufMapping mapping;
    /** Set by {@link #detach}: no map any more. Guarded by the reservation lock. */
    private boolean released;
    private volatile long maps;
    private volatile long invalidations;

    private DmabufUserMemory(DmaBuf buf, long offset, long length, long iova, MrImpl mr, boolean pinned) {
        super(offset, length, iova);
        this.buf = buf;
        this.mr = mr;
        this.pinned = pinned;
    }

    /**
     * {@code ib_umem_dmabuf_get} or {@code ib_umem_dmabuf_get_pinned}: takes a reference to {@code buf} (the
     * range was checked against its size), attaches {@code device} and maps. On any failure nothing stays
     * attached, mapped, pinned or referenced.
     */
    static DmabufUserMemory get(DmaBuf buf, Device device, long offset, long length, long iova, MrImpl mr, boolean pinned) {
        buf.get();
        DmabufUserMemory u = new DmabufUserMemory(buf, offset, length, iova, mr, pinned);
        try {
            u.attachment = buf.attach(device, new Importer(true, u::moveNotify));
        } catch (RuntimeException e) {
            buf.put();
            throw e;
        }
        Reservation resv = buf.resv();
        boolean pinTaken = false;
        try {
            resv.lock();
            try {
                if (pinned) {
                    buf.pin(u.attachment);
                    pinTaken = true;
                }
                u.mapLocked();
            } catch (RuntimeException e) {
                if (pinTaken) {
                    buf.unpin(u.attachment);
                }
                throw e;
            } finally {
                resv.unlock();
            }
        } catch (RuntimeException e) {
            buf.detach(u.attachment);
            buf.put();
            throw e;
        }
        return u;
    }

    DmaBuf dmabuf() {
        return buf;
    }

    boolean pinned() {
        return pinned;
    }

    /** Maps made so far: 1 after registration, one more after each {@code move_notify} that was followed by an access. */
    long maps() {
        return maps;
    }

    /** {@code move_notify}s that dropped a mapping. */
    long invalidations() {
        return invalidations;
    }

    @Override
    boolean onDemand() {
        return false;
    }

    @Override
    long pageSize() {
        return HostMemory.PAGE_SIZE;
    }

    @Override
    long[] dmaBlocks() {
        return new long[0];
    }

    @Override
    long pinnedPages() {
        return 0;
    }

    @Override
    int dmaMappings() {
        return mapping != null ? 1 : 0;
    }

    /**
     * {@code ib_umem_dmabuf_map_pages} with the reservation lock held: maps the attachment unless a mapping is
     * there, then waits for the {@code KERNEL} fences in either case. A map whose fences do not signal is undone.
     */
    private void mapLocked() {
        Reservation resv = buf.resv();
        if (released) {
            throw new ErrnoException(Errno.EINVAL, "the dma-buf region of " + buf + " was deregistered");
        }
        DmaBufMapping m = mapping;
        boolean fresh = m == null;
        if (fresh) {
            m = buf.map(attachment, DmaDirection.BIDIRECTIONAL);
        }
        boolean idle;
        try {
            idle = resv.await(ResvUsage.KERNEL, FENCE_TIMEOUT);
        } catch (RuntimeException e) {
            if (fresh) {
                buf.unmap(m);
            }
            throw e;
        }
        if (!idle) {
            if (fresh) {
                buf.unmap(m);
            }
            throw new ErrnoException(Errno.ETIMEDOUT, "the KERNEL fences of " + buf + " (a move) did not signal within "
                    + FENCE_TIMEOUT);
        }
        if (fresh) {
            checkCovers(m);
            // readers find it under the region's read lock; it only goes under the write lock
            mapping = m;
            maps++;
        }
    }

    private void checkCovers(DmaBufMapping m) {
        long n = 0;
        for (DmaSegment s : m.segments()) {
            n += s.length();
        }
        if (n < addr + length) {
            buf.unmap(m);
            throw new ErrnoException(Errno.EIO, "the mapping of " + buf + " covers " + n + " bytes, the region ends at "
                    + (addr + length));
        }
    }

    /**
     * Makes the mapping present and returns with {@code rw}'s read lock held (the page fault of a dma-buf region:
     * mlx5's {@code pagefault_dmabuf_mr}). {@code check} runs under the read lock and throws to refuse.
     *
     * @throws ErrnoException as the map refuses (no lock held then)
     */
    void makePresent(ReentrantReadWriteLock rw, Runnable check) {
        while (true) {
            rw.readLock().lock();
            boolean keep = false;
            try {
                check.run();
                if (mapping != null) {
                    keep = true;
                    return;
                }
            } finally {
                if (!keep) {
                    rw.readLock().unlock();
                }
            }
            Reservation resv = buf.resv();
            resv.lock();
            try {
                mapLocked();
            } finally {
                resv.unlock();
            }
        }
    }

    /** Bus ranges of {@code [offset, offset+len)} of the region through the current mapping (read lock held). */
    @Override
    List<DmaSegment> translate(long offset, long len) {
        DmaBufMapping m = mapping;
        if (m == null) {
            throw new IllegalStateException("dma-buf region of " + buf + " is not mapped under the read lock");
        }
        checkSpan(offset, len);
        SgAppendTable<DmaSegment> out = SgAppendTable.dmaSegments();
        long pos = addr + offset;
        long end = pos + len;
        long segBase = 0;
        for (DmaSegment s : m.segments()) {
            long segEnd = segBase + s.length();
            if (pos < segEnd && pos < end) {
                long n = Math.min(segEnd, end) - pos;
                out.append(s.dmaAddress() + (pos - segBase), n);
                pos += n;
            }
            segBase = segEnd;
        }
        return out.toList();
    }

    /**
     * The importer's {@code move_notify} (the exporter holds the reservation lock): mlx5's
     * {@code mlx5_ib_dmabuf_invalidate_cb}. Waits for accesses in progress, tells the driver, unmaps; the next
     * access maps again.
     */
    private void moveNotify(Attachment a) {
        if (pinned && !buf.isRevoked()) {
            LOG.warn("{}: move_notify for the pinned dma-buf region of {}; a pinned buffer should not move",
                    a.device().name(), buf);
        }
        if (mapping == null) {
            return;
        }
        ReentrantReadWriteLock.WriteLock w = mr.rw.writeLock();
        w.lock();
        try {
            DmaBufMapping m = mapping;
            if (m == null) {
                return;
            }
            mr.dev.provider.invalidateRange(mr, iova, length);
            mapping = null;
            invalidations++;
            buf.unmap(m);
        } finally {
            w.unlock();
        }
    }

    /**
     * {@code ib_umem_dmabuf_release}, run without the region's lock: under the reservation lock, waits for accesses
     * in progress (the region's write lock), unmaps and unpins; then detaches and drops the buffer reference.
     */
    @Override
    void detach() {
        Reservation resv = buf.resv();
        resv.lock();
        try {
            released = true;
            ReentrantReadWriteLock.WriteLock w = mr.rw.writeLock();
            w.lock();
            try {
                DmaBufMapping m = mapping;
                mapping = null;
                if (m != null) {
                    unmapQuietly(m);
                }
            } finally {
                w.unlock();
            }
            if (pinned) {
                try {
                    buf.unpin(attachment);
                } catch (ErrnoException e) {
                    LOG.error("{}: unpin of {} failed", mr.dev.name(), buf, e);
                }
            }
        } finally {
            resv.unlock();
        }
        try {
            buf.detach(attachment);
        } catch (ErrnoException e) {
            LOG.error("{}: detach from {} failed", mr.dev.name(), buf, e);
        }
        buf.put();
    }

    private void unmapQuietly(DmaBufMapping m) {
        try {
            buf.unmap(m);
        } catch (ErrnoException e) {
            LOG.error("{}: unmap of {} failed (device gone?)", mr.dev.name(), buf, e);
        }
    }

    /** Everything went in {@link #detach}. */
    @Override
    void release() {
    }
}
