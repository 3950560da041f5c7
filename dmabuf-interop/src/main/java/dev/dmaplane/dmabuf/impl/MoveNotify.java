package dev.dmaplane.dmabuf.impl;

import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.dmabuf.DmaBufMapping.State;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.Exporter;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.Fences;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The invalidation side of one dma-buf ({@code dma_buf_move_notify} in {@code drivers/dma-buf/dma-buf.c} and the
 * revoke of an exporter that loses its memory): the move generation, dynamic importers told and their mappings
 * marked moving, mappings older than a generation retired (device access cut, stale), the buffer revoked, and the
 * mappings importers still hold torn down when the exporter goes. The caller has checked the reservation lock; the
 * mapping states change under the buffer's mapping lock.
 */
final class MoveNotify {
    private static final Logger LOG = LoggerFactory.getLogger(DmaBufImpl.class);

    private final DmaBufImpl buf;
    private final DmaBufs registry;
    private final Exporter ops;
    private final List<AttachmentImpl> attachments;
    private final AtomicLong generation = new AtomicLong();
    private volatile boolean revoked;

    MoveNotify(DmaBufImpl buf, DmaBufs registry, List<AttachmentImpl> attachments) {
        this.buf = buf;
        this.registry = registry;
        this.ops = buf.ops();
        this.attachments = attachments;
    }

    /** The move generation a new mapping is made in. */
    long generation() {
        return generation.get();
    }

    boolean isRevoked() {
        return revoked;
    }

    /** {@code dma_buf_move_notify}: a new generation, the importers told; returns the generation. */
    long moveNotify() {
        long gen = generation.incrementAndGet();
        notifyImporters("move");
        return gen;
    }

    private void notifyImporters(String why) {
        List<AttachmentImpl> all = List.copyOf(attachments);
        synchronized (buf.mappingLock) {
            for (AttachmentImpl a : all) {
                for (MappingImpl m : a.mappings) {
                    if (m.state == State.LIVE) {
                        m.state = State.MOVING;
                    }
                }
            }
        }
        Tracer tracer = registry.tracer();
        String event = tracer.isEnabled() ? "move_notify dma-buf " + buf.ino() + " (" + why + ")" : null;
        for (AttachmentImpl a : all) {
            if (a.isDynamic()) {
                if (event != null) {
                    tracer.emit(TraceKind.DMA_BUF, a.device().name(), -1, buf.size(), event);
                }
                a.importer().orElseThrow().moveNotify(a);
            }
        }
    }

    /** Every live or moving mapping made before generation {@code gen} made stale, its device access cut. */
    int retire(long gen, String reason) {
        String why = "dma-buf " + buf.ino() + " (" + buf.exporterName() + "): " + (reason == null ? "backing moved" : reason);
        List<MappingImpl> retired = new ArrayList<>();
        synchronized (buf.mappingLock) {
            for (AttachmentImpl a : attachments) {
                for (MappingImpl m : a.mappings) {
                    if (m.generation < gen && (m.state == State.LIVE || m.state == State.MOVING)) {
                        cutAccess(m, why);
                        m.state = State.STALE;
                        retired.add(m);
                    }
                }
            }
        }
        for (MappingImpl m : retired) {
            registry.tracer().emit(TraceKind.DMA_BUF, m.attachment.device().name(), m.sg.segments().getFirst().dmaAddress(),
                    m.sg.length(), "mapping of dma-buf " + buf.ino() + " is stale, device access cut: " + why);
        }
        return retired.size();
    }

    private void cutAccess(MappingImpl m, String why) {
        try {
            if (ops.revokeMapping() != null) {
                ops.revokeMapping().revoke(m.attachment, m.sg, m.direction, why);
            } else {
                m.attachment.device().dma().revokeSg(m.sg, m.direction, why);
            }
        } catch (ErrnoException e) {
            // a device that left its bus can no longer reach anything
            LOG.warn("cutting {}'s access to dma-buf {} failed: {}", m.attachment.device().name(), buf.ino(), e.getMessage());
        }
    }

    /**
     * Revokes the buffer once: a new generation, the importers told at once, and every mapping retired when the
     * fences of all usages, BOOKKEEP included, have signaled.
     */
    void revoke(String reason) {
        if (revoked) {
            return;
        }
        revoked = true;
        long gen = generation.incrementAndGet();
        // dma_resv_usage: every fence, BOOKKEEP included, covers DMA that may still run on the mappings
        Fence idle = Fences.all(buf.resv().fences(ResvUsage.BOOKKEEP));
        registry.tracer().emit(TraceKind.DMA_BUF, buf.exporterName(), -1, buf.size(), "revoke dma-buf " + buf.ino() + ": "
                + reason + (idle.isSignaled() ? "" : "; mappings retired when " + idle + " signals"));
        notifyImporters("revoke");
        if (!idle.addCallback(f -> retire(gen, "revoked: " + reason))) {
            retire(gen, "revoked: " + reason);
        }
    }

    /**
     * The mappings importers still hold after a revoke, reported as leaks and torn down, as the exporter goes
     * ({@code why} says why); a mapping whose unmap fails is dropped from the bookkeeping.
     */
    int reclaim(String why) {
        List<MappingImpl> held = new ArrayList<>();
        synchronized (buf.mappingLock) {
            for (AttachmentImpl a : attachments) {
                held.addAll(a.mappings);
            }
        }
        for (MappingImpl m : held) {
            AttachmentImpl a = m.attachment;
            long addr = m.sg.segments().getFirst().dmaAddress();
            String msg = "exporter " + buf.exporterName() + " of dma-buf " + buf.ino() + " went away (" + why + ") while "
                    + (a.isDynamic() ? "dynamic" : "static") + " importer " + a.device().name() + " still held a mapping ("
                    + m.direction + ", " + m.state + ") at 0x" + Long.toHexString(addr);
            registry.dmaDebug().report(DmaDebugReport.Kind.LEAK_AT_UNBIND, a.device().name(), addr, m.sg.length(), msg, null);
            registry.tracer().emit(TraceKind.DMA_BUF, a.device().name(), addr, m.sg.length(), msg + ": tearing it down");
            try {
                buf.unmapLocked(m);
            } catch (ErrnoException e) {
                // an importer whose device left its bus: the DMA layer reclaimed its mappings then; drop the bookkeeping
                LOG.warn("dma-buf {}: unmapping {}'s mapping failed ({}); dropping it", buf.ino(), a.device().name(), e.getMessage());
                synchronized (buf.mappingLock) {
                    m.state = State.UNMAPPED;
                    a.mappings.remove(m);
                }
                if (m.corePinned) {
                    a.corePins--;
                    ops.unpin().apply(a);
                }
            }
            m.reclaimed = true;
        }
        return held.size();
    }
}
