package dev.dmaplane.dmabuf.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufHandle;
import dev.dmaplane.dmabuf.DmaBufMapping;
import dev.dmaplane.dmabuf.DmaBufMapping.State;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.ExportInfo;
import dev.dmaplane.dmabuf.Exporter;
import dev.dmaplane.dmabuf.Importer;
import dev.dmaplane.dmabuf.PhysVec;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Reservation;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.resource.UContext;
import dev.dmaplane.trace.TraceKind;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;

/**
 * {@code struct dma_buf} and the core of {@code drivers/dma-buf/dma-buf.c}. The reservation lock orders
 * attach/detach against maps and moves; an internal mapping lock (taken after the reservation lock, never
 * before it) guards mapping states so that an exporter can retire mappings from its move path without the
 * reservation lock.
 * <p>
 * The invalidation side (move generation, {@code move_notify}, retire, revoke and reclaim) is {@link MoveNotify};
 * the attachment and mapping states are {@link AttachmentImpl} and {@link MappingImpl}. Attach, map, pin and CPU
 * access stay here, where the lock order reads in one place as it does in {@code dma-buf.c}.
 */
public final class DmaBufImpl implements DmaBuf {
    private static final Logger LOG = LoggerFactory.getLogger(DmaBufImpl.class);

    private final DmaBufs registry;
    private final long ino;
    private final long size;
    private final String exporterName;
    private final Exporter ops;
    private final Reservation resv;
    private final Object priv;
    private volatile String name;
    private final AtomicLong refs = new AtomicLong(1);
    private volatile boolean released;
    private final List<AttachmentImpl> attachments = new CopyOnWriteArrayList<>();
    final Object mappingLock = new Object();
    private final MoveNotify invalidation;

    public DmaBufImpl(DmaBufs registry, long ino, ExportInfo info) {
        this.registry = registry;
        this.ino = ino;
        this.size = info.size();
        this.exporterName = info.exporterName();
        this.ops = info.ops();
        this.resv = info.resv() != null ? info.resv() : new Reservation("dmabuf-" + ino);
        this.priv = info.priv();
        this.invalidation = new MoveNotify(this, registry, attachments);
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public String exporterName() {
        return exporterName;
    }

    @Override
    public long ino() {
        return ino;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public void setName(String newName) {
        checkAlive("DMA_BUF_SET_NAME");
        ErrnoException.check(newName != null, Errno.EINVAL, "dma-buf " + ino + ": null name");
        ErrnoException.check(newName.length() <= DmaBufs.NAME_MAX, Errno.EINVAL, "dma-buf " + ino + ": name '" + newName
                + "' is longer than " + DmaBufs.NAME_MAX + " characters");
        this.name = newName;
    }

    @Override
    public Reservation resv() {
        return resv;
    }

    @Override
    public Object priv() {
        return priv;
    }

    @Override
    public Exporter ops() {
        return ops;
    }

    @Override
    public boolean isDynamic() {
        return ops.isDynamic();
    }

    @Override
    public boolean isRevoked() {
        return invalidation.isRevoked();
    }

    @Override
    public long refCount() {
        return Math.max(0, refs.get());
    }

    @Override
    public boolean isReleased() {
        return released;
    }

    @Override
    public void get() {
        for (;;) {
            long r = refs.get();
            ErrnoException.check(r > 0, Errno.EBADF, "get of dma-buf " + ino + ", which was released");
            if (refs.compareAndSet(r, r + 1)) {
                return;
            }
        }
    }

    @Override
    public void put() {
        long left;
        for (;;) {
            long r = refs.get();
            ErrnoException.check(r > 0, Errno.EBADF, "put of dma-buf " + ino + ", which was released");
            ErrnoException.check(r > 1 || !resv.isHeldByCurrentThread(), Errno.EDEADLK, "last put of dma-buf " + ino
                    + " with its reservation lock held");
            if (refs.compareAndSet(r, r - 1)) {
                left = r - 1;
                break;
            }
        }
        if (left == 0) {
            release();
        }
    }

    private void release() {
        for (AttachmentImpl a : List.copyOf(attachments)) {
            registry.tracer().emit(TraceKind.DMA_BUF, a.device().name(), -1, size, "release of dma-buf " + ino
                    + " with the device still attached: detaching it");
            LOG.warn("dma-buf {} released while {} is still attached", ino, a.device().name());
            detachInternal(a);
        }
        released = true;
        registry.forget(this);
        try {
            ops.release().release(this);
        } finally {
            registry.tracer().emit(TraceKind.DMA_BUF, exporterName, -1, size, "release ino " + ino);
        }
    }

    @Override
    public DmaBufHandle fd(UContext ctx) {
        checkAlive("dma_buf_fd");
        return DmaBufHandle.install(this, ctx);
    }

    @Override
    public List<Attachment> attachments() {
        return List.copyOf(attachments);
    }

    @Override
    public Attachment attach(Device device, Importer importer) {
        checkAlive("dma_buf_attach");
        ErrnoException.check(device != null, Errno.EINVAL, "dma_buf_attach of dma-buf " + ino + " without a device");
        ErrnoException.check(importer == null || importer.onMove() != null, Errno.EINVAL, "dma_buf_dynamic_attach of "
                + device.name() + " to dma-buf " + ino + ": importer ops without move_notify");
        notHeld("dma_buf_attach");
        AttachmentImpl a = new AttachmentImpl(this, device, importer);
        if (ops.attach() != null) {
            ops.attach().apply(this, a);
        }
        resv.lock();
        try {
            attachments.add(a);
        } finally {
            resv.unlock();
        }
        registry.tracer().emit(TraceKind.DMA_BUF, device.name(), -1, size, "attach to dma-buf " + ino + " ("
                + exporterName + ")" + (a.isDynamic() ? " dynamic" : " static") + (a.peer2peer() ? " p2p" : ""));
        return a;
    }

    @Override
    public void detach(Attachment attachment) {
        AttachmentImpl a = own(attachment, "dma_buf_detach");
        notHeld("dma_buf_detach");
        detachInternal(a);
    }

    private void detachInternal(AttachmentImpl a) {
        resv.lock();
        try {
            List<MappingImpl> left;
            synchronized (mappingLock) {
                left = List.copyOf(a.mappings);
            }
            for (MappingImpl m : left) {
                String msg = "dma_buf_detach of " + a.device().name() + " from dma-buf " + ino + " with a mapping still held ("
                        + m.direction + ", " + m.state + ") at 0x" + Long.toHexString(m.sg.segments().getFirst().dmaAddress());
                registry.dmaDebug().report(DmaDebugReport.Kind.LEAK_AT_UNBIND, a.device().name(),
                        m.sg.segments().getFirst().dmaAddress(), m.sg.length(), msg, null);
                registry.tracer().emit(TraceKind.DMA_BUF, a.device().name(), m.sg.segments().getFirst().dmaAddress(),
                        m.sg.length(), msg + ": unmapping it");
                unmapLocked(m);
            }
            if (a.importerPins > 0) {
                registry.tracer().emit(TraceKind.DMA_BUF, a.device().name(), -1, size, "dma_buf_detach with "
                        + a.importerPins + " pin(s) still held: unpinning");
                while (a.importerPins > 0) {
                    ops.unpin().apply(a);
                    a.importerPins--;
                }
            }
            attachments.remove(a);
            a.detached = true;
        } finally {
            resv.unlock();
        }
        try {
            if (ops.detach() != null) {
                ops.detach().apply(this, a);
            }
        } finally {
            registry.tracer().emit(TraceKind.DMA_BUF, a.device().name(), -1, size, "detach from dma-buf " + ino);
        }
    }

    @Override
    public DmaBufMapping map(Attachment attachment, DmaDirection direction) {
        AttachmentImpl a = own(attachment, "dma_buf_map_attachment");
        ErrnoException.check(direction != null && direction != DmaDirection.NONE, Errno.EINVAL,
                "dma_buf_map_attachment of dma-buf " + ino + " for " + a.device().name() + " with direction " + direction);
        assertHeld("dma_buf_map_attachment");
        ErrnoException.check(!invalidation.isRevoked(), Errno.ENODEV, "dma-buf " + ino + " was revoked by " + exporterName);
        boolean pinOnMap = isDynamic() && !a.isDynamic();
        if (pinOnMap) {
            ops.pin().apply(a);
        }
        MappedSg sg;
        try {
            sg = ops.map().map(a, direction);
            ErrnoException.check(sg != null, Errno.ENOMEM, exporterName + " returned no mapping for dma-buf " + ino);
        } catch (RuntimeException e) {
            if (pinOnMap) {
                ops.unpin().apply(a);
            }
            throw e;
        }
        if (!a.isDynamic()) {
            boolean idle;
            try {
                idle = resv.await(ResvUsage.KERNEL, registry.fenceTimeout());
            } catch (RuntimeException e) {
                undoMap(a, sg, direction, pinOnMap);
                throw e;
            }
            if (!idle) {
                undoMap(a, sg, direction, pinOnMap);
                throw new ErrnoException(Errno.ETIMEDOUT, "dma-buf " + ino + ": the KERNEL fences (a pending move) did not signal within "
                        + registry.fenceTimeout() + " for static importer " + a.device().name());
            }
        }
        MappingImpl m = new MappingImpl(a, direction, sg, invalidation.generation(), pinOnMap);
        synchronized (mappingLock) {
            a.mappings.add(m);
        }
        if (pinOnMap) {
            a.corePins++;
        }
        registry.tracer().emit(TraceKind.DMA_BUF, a.device().name(), sg.segments().getFirst().dmaAddress(), sg.length(),
                "map dma-buf " + ino + " " + direction + " " + sg.segments().size() + " segment(s)"
                        + (pinOnMap ? ", pinned for a static importer" : ""));
        return m;
    }

    @Override
    public List<PhysVec> physRanges(Attachment attachment) {
        AttachmentImpl a = own(attachment, "dma-buf physical ranges");
        assertHeld("dma-buf physical ranges");
        ErrnoException.check(a.importer().map(Importer::physical).orElse(false), Errno.EINVAL, "dma-buf " + ino
                + ": " + a.device().name() + " did not attach as an importer of physical ranges, whose move_notify"
                + " revokes");
        ErrnoException.check(!invalidation.isRevoked(), Errno.ENODEV, "dma-buf " + ino + " was revoked by " + exporterName);
        ErrnoException.check(ops.phys() != null, Errno.EOPNOTSUPP, "dma-buf " + ino + ": exporter " + exporterName
                + " gives no physical address list (only revocable exporters that know their ranges do)");
        List<PhysVec> ranges = List.copyOf(ops.phys().phys(a));
        long total = 0;
        for (PhysVec p : ranges) {
            total += p.length();
        }
        ErrnoException.check(!ranges.isEmpty() && total == size, Errno.EIO, "dma-buf " + ino + ": exporter "
                + exporterName + " gave " + ranges.size() + " range(s) of " + total + " bytes for " + size);
        registry.tracer().emit(TraceKind.DMA_BUF, a.device().name(), ranges.getFirst().paddr(), size,
                "physical ranges of dma-buf " + ino + ": " + ranges.size());
        return ranges;
    }

    private void undoMap(AttachmentImpl a, MappedSg sg, DmaDirection direction, boolean pinned) {
        ops.unmap().unmap(a, sg, direction);
        if (pinned) {
            ops.unpin().apply(a);
        }
    }

    @Override
    public DmaBufMapping mapUnlocked(Attachment attachment, DmaDirection direction) {
        AttachmentImpl a = own(attachment, "dma_buf_map_attachment_unlocked");
        ErrnoException.check(!a.isDynamic(), Errno.EPERM, "dma_buf_map_attachment_unlocked by dynamic importer "
                + a.device().name() + ": dynamic importers map with the reservation lock held");
        notHeld("dma_buf_map_attachment_unlocked");
        resv.lock();
        try {
            return map(a, direction);
        } finally {
            resv.unlock();
        }
    }

    @Override
    public void unmap(DmaBufMapping mapping) {
        MappingImpl m = ownMapping(mapping, "dma_buf_unmap_attachment");
        assertHeld("dma_buf_unmap_attachment");
        if (m.reclaimed) {
            registry.tracer().emit(TraceKind.DMA_BUF, m.attachment.device().name(), m.sg.segments().getFirst().dmaAddress(),
                    m.sg.length(), "unmap dma-buf " + ino + ": the exporter already tore this mapping down at its stop");
            return;
        }
        unmapLocked(m);
        registry.tracer().emit(TraceKind.DMA_BUF, m.attachment.device().name(), m.sg.segments().getFirst().dmaAddress(),
                m.sg.length(), "unmap dma-buf " + ino + " " + m.direction);
    }

    /** Unmaps {@code m} at the exporter and drops the core's pin of it; reservation lock held. */
    void unmapLocked(MappingImpl m) {
        synchronized (mappingLock) {
            ErrnoException.check(m.state != State.UNMAPPED, Errno.EINVAL, "dma_buf_unmap_attachment of a mapping of dma-buf "
                    + ino + " for " + m.attachment.device().name() + " that was already unmapped");
            ops.unmap().unmap(m.attachment, m.sg, m.direction);
            m.state = State.UNMAPPED;
            m.attachment.mappings.remove(m);
        }
        if (m.corePinned) {
            m.attachment.corePins--;
            ops.unpin().apply(m.attachment);
        }
    }

    @Override
    public void unmapUnlocked(DmaBufMapping mapping) {
        MappingImpl m = ownMapping(mapping, "dma_buf_unmap_attachment_unlocked");
        ErrnoException.check(!m.attachment.isDynamic(), Errno.EPERM, "dma_buf_unmap_attachment_unlocked by dynamic importer "
                + m.attachment.device().name() + ": dynamic importers unmap with the reservation lock held");
        notHeld("dma_buf_unmap_attachment_unlocked");
        resv.lock();
        try {
            unmap(m);
        } finally {
            resv.unlock();
        }
    }

    @Override
    public void pin(Attachment attachment) {
        AttachmentImpl a = own(attachment, "dma_buf_pin");
        ErrnoException.check(a.isDynamic(), Errno.EINVAL, "dma_buf_pin by static importer " + a.device().name()
                + ": only dynamic importers pin");
        assertHeld("dma_buf_pin");
        if (ops.pin() != null) {
            ops.pin().apply(a);
        }
        a.importerPins++;
        registry.tracer().emit(TraceKind.DMA_BUF, a.device().name(), -1, size, "pin dma-buf " + ino);
    }

    @Override
    public void unpin(Attachment attachment) {
        AttachmentImpl a = own(attachment, "dma_buf_unpin");
        ErrnoException.check(a.isDynamic(), Errno.EINVAL, "dma_buf_unpin by static importer " + a.device().name());
        assertHeld("dma_buf_unpin");
        ErrnoException.check(a.importerPins > 0, Errno.EINVAL, "dma_buf_unpin by " + a.device().name()
                + " of dma-buf " + ino + ", which it has not pinned");
        if (ops.unpin() != null) {
            ops.unpin().apply(a);
        }
        a.importerPins--;
        registry.tracer().emit(TraceKind.DMA_BUF, a.device().name(), -1, size, "unpin dma-buf " + ino);
    }

    @Override
    public long moveNotify() {
        checkAlive("dma_buf_move_notify");
        assertHeld("dma_buf_move_notify");
        return invalidation.moveNotify();
    }

    @Override
    public int retireMappings(long gen, String reason) {
        return invalidation.retire(gen, reason);
    }

    @Override
    public void revoke(String reason) {
        checkAlive("revoke");
        assertHeld("revoke");
        invalidation.revoke(reason);
    }

    @Override
    public int reclaimMappings(String reason) {
        assertHeld("reclaim of mappings");
        ErrnoException.check(invalidation.isRevoked(), Errno.EINVAL, "dma-buf " + ino + ": mappings are reclaimed only"
                + " after revoke, which tells the importers first");
        return invalidation.reclaim(reason == null || reason.isBlank() ? "exporter " + exporterName + " stopped" : reason);
    }

    @Override
    public void beginCpuAccess(DmaDirection direction) {
        checkAlive("dma_buf_begin_cpu_access");
        ErrnoException.check(direction != null && direction != DmaDirection.NONE, Errno.EINVAL,
                "dma_buf_begin_cpu_access with direction " + direction);
        notHeld("dma_buf_begin_cpu_access");
        if (ops.beginCpuAccess() != null) {
            ops.beginCpuAccess().apply(this, direction);
        }
        boolean write = direction == DmaDirection.BIDIRECTIONAL || direction == DmaDirection.TO_DEVICE;
        ResvUsage usage = write ? ResvUsage.READ : ResvUsage.WRITE;
        ErrnoException.check(resv.await(usage, registry.fenceTimeout()), Errno.ETIMEDOUT, "dma_buf_begin_cpu_access of dma-buf "
                + ino + ": fences up to " + usage + " did not signal within " + registry.fenceTimeout());
    }

    @Override
    public void endCpuAccess(DmaDirection direction) {
        checkAlive("dma_buf_end_cpu_access");
        ErrnoException.check(direction != null && direction != DmaDirection.NONE, Errno.EINVAL,
                "dma_buf_end_cpu_access with direction " + direction);
        notHeld("dma_buf_end_cpu_access");
        if (ops.endCpuAccess() != null) {
            ops.endCpuAccess().apply(this, direction);
        }
    }

    @Override
    public void cpuRead(long offset, MemorySegment dst) {
        cpuCopy("cpu read", ops.cpuRead(), offset, dst);
    }

    @Override
    public void cpuWrite(long offset, MemorySegment src) {
        cpuCopy("cpu write", ops.cpuWrite(), offset, src);
    }

    private void cpuCopy(String what, Exporter.CpuCopyOp op, long offset, MemorySegment data) {
        checkAlive(what);
        ErrnoException.check(data != null, Errno.EINVAL, what + " of dma-buf " + ino + " without a buffer");
        ErrnoException.check(op != null, Errno.EINVAL, what + " of dma-buf " + ino + ": exporter " + exporterName
                + " has no CPU view (no vmap)");
        ErrnoException.check(offset >= 0 && offset <= size - data.byteSize(), Errno.EINVAL, what + " of "
                + data.byteSize() + " bytes at " + offset + " is outside the " + size + "-byte dma-buf " + ino);
        assertHeld(what);
        ErrnoException.check(!invalidation.isRevoked(), Errno.ENODEV, "dma-buf " + ino + " was revoked by " + exporterName);
        op.copy(this, offset, data);
    }

    private void checkAlive(String what) {
        ErrnoException.check(!released && refs.get() > 0, Errno.EBADF, what + " of dma-buf " + ino + ", which was released");
    }

    private void assertHeld(String what) {
        ErrnoException.check(resv.isHeldByCurrentThread(), Errno.EPERM, what + " of dma-buf " + ino
                + " without holding its reservation lock " + resv.name());
    }

    private void notHeld(String what) {
        ErrnoException.check(!resv.isHeldByCurrentThread(), Errno.EDEADLK, what + " of dma-buf " + ino
                + " with its reservation lock held; it takes the lock itself");
    }

    private AttachmentImpl own(Attachment attachment, String what) {
        checkAlive(what);
        ErrnoException.check(attachment instanceof AttachmentImpl ai && ai.dmabuf == this, Errno.EINVAL,
                what + ": " + attachment + " is not an attachment of dma-buf " + ino);
        AttachmentImpl a = (AttachmentImpl) attachment;
        ErrnoException.check(!a.detached, Errno.EINVAL, what + ": " + a.device().name() + " was detached from dma-buf " + ino);
        return a;
    }

    private MappingImpl ownMapping(DmaBufMapping mapping, String what) {
        checkAlive(what);
        ErrnoException.check(mapping instanceof MappingImpl mi && mi.attachment.dmabuf == this, Errno.EINVAL,
                what + ": " + mapping + " is not a mapping of dma-buf " + ino);
        return (MappingImpl) mapping;
    }

    @Override
    public String toString() {
        return "dma-buf " + ino + " (" + exporterName + ", " + size + " bytes" + (name == null ? "" : ", " + name) + ")";
    }
}
