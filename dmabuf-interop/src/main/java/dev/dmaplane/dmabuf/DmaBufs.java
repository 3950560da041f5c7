package dev.dmaplane.dmabuf;

import dev.dmaplane.dma.DmaDebug;
import dev.dmaplane.dmabuf.impl.DmaBufImpl;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.ResvFence;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.resource.UContext;
import dev.dmaplane.resource.UObject;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The dma-buf core of one machine: {@link #export} ({@code dma_buf_export}), the list of live buffers
 * ({@code dmabuf_list}) and its {@code /sys/kernel/debug/dma_buf/bufinfo} view. One per {@link Machine}
 * ({@link #of}, kept as the machine's {@link Machine#attachment}); in OSGi the interop bundle offers that one as a
 * service of this type, so drivers and shell commands see one registry.
 */
public final class DmaBufs {
    /** {@code DMA_BUF_NAME_LEN} minus the terminator: the longest name {@link DmaBuf#setName} takes. */
    public static final int NAME_MAX = 31;

    private final Tracer tracer;
    private final DmaDebug debug;
    private final HostMemory memory;
    private final AtomicLong nextIno = new AtomicLong();
    private final List<DmaBuf> live = new CopyOnWriteArrayList<>();
    private volatile Duration fenceTimeout = Duration.ofSeconds(10);

    /** A registry outside any machine (tests); {@code memory} may be null when no heap is used. */
    public DmaBufs(Tracer tracer, DmaDebug debug, HostMemory memory) {
        this.tracer = ErrnoException.requireNonNull(tracer, "tracer");
        this.debug = ErrnoException.requireNonNull(debug, "debug");
        this.memory = memory;
    }

    /**
     * The registry of {@code machine}, made on first use and kept by the machine itself, so no state outlives it.
     *
     * @throws ErrnoException {@code ENODEV} for a closed machine
     */
    public static DmaBufs of(Machine machine) {
        ErrnoException.requireNonNull(machine, "machine");
        return machine.attachment(DmaBufs.class, m -> new DmaBufs(m.tracer(), m.dmaDebug(), m.memory()));
    }

    public Tracer tracer() {
        return tracer;
    }

    public DmaDebug dmaDebug() {
        return debug;
    }

    /** The machine's RAM, for heaps. */
    public HostMemory memory() {
        ErrnoException.check(memory != null, Errno.ENODEV, "this dma-buf registry has no host memory");
        return memory;
    }

    /**
     * How long a map for a static importer or a begin-CPU-access waits for fences before failing with
     * {@code ETIMEDOUT} (the kernel waits without limit; a bounded wait keeps a lost fence from hanging a test).
     */
    public Duration fenceTimeout() {
        return fenceTimeout;
    }

    public void setFenceTimeout(Duration timeout) {
        ErrnoException.check(timeout != null && !timeout.isNegative(), Errno.EINVAL, "fence timeout " + timeout);
        this.fenceTimeout = timeout;
    }

    /**
     * {@code dma_buf_export}: a new buffer holding one reference, listed until released.
     *
     * @throws ErrnoException {@code EINVAL} for a missing name or ops, a size that is not positive or not a
     *                        multiple of the page size, ops lacking map/unmap/release or with only one of
     *                        pin/unpin (the message names what is missing)
     */
    public DmaBuf export(ExportInfo info) {
        ErrnoException.check(info != null, Errno.EINVAL, "dma_buf_export without export info");
        ErrnoException.check(info.exporterName() != null && !info.exporterName().isBlank(), Errno.EINVAL,
                "dma_buf_export needs an exporter name, not '" + info.exporterName() + "'");
        ErrnoException.check(info.ops() != null, Errno.EINVAL, "dma_buf_export by " + info.exporterName() + " without ops");
        List<String> problems = info.ops().problems();
        ErrnoException.check(problems.isEmpty(), Errno.EINVAL, "dma_buf_export by " + info.exporterName() + ": "
                + String.join(", ", problems));
        long size = info.size();
        ErrnoException.check(size > 0 && (size & (HostMemory.PAGE_SIZE - 1)) == 0, Errno.EINVAL,
                "dma_buf_export by " + info.exporterName() + ": size " + size + " is not a positive multiple of "
                        + HostMemory.PAGE_SIZE);
        DmaBufImpl buf = new DmaBufImpl(this, nextIno.incrementAndGet(), info);
        live.add(buf);
        tracer.emit(TraceKind.DMA_BUF, info.exporterName(), -1, size, "export ino " + buf.ino()
                + (buf.isDynamic() ? " dynamic" : " static") + (info.resv() == null ? "" : " shared resv " + info.resv().name()));
        return buf;
    }

    /** Called by the core when a buffer's last reference went. */
    public void forget(DmaBuf buf) {
        live.remove(buf);
    }

    /** The live buffers, newest first as {@code dmabuf_list} lists them. */
    public List<DmaBuf> list() {
        List<DmaBuf> out = new ArrayList<>(live);
        Collections.reverse(out);
        return out;
    }

    /**
     * {@code dma_buf_get(fd)}: the buffer behind handle {@code fd} of {@code ctx}, with a new reference the
     * caller must {@link DmaBuf#put}.
     *
     * @throws ErrnoException {@code EBADF} for a handle that is not open, {@code EINVAL} for a handle of another
     *                        type (not a dma-buf file)
     */
    public static DmaBuf get(UContext ctx, int fd) {
        DmaBufHandle h = handle(ctx, fd);
        h.dmabuf().get();
        return h.dmabuf();
    }

    /** The open handle {@code fd} of {@code ctx}; errors as {@link #get}. */
    public static DmaBufHandle handle(UContext ctx, int fd) {
        ErrnoException.check(ctx != null, Errno.EBADF, "no context for fd " + fd);
        UObject found = null;
        try (UContext.Call ignored = ctx.enter()) {
            for (UObject o : ctx.objects()) {
                if (o.handle() == fd) {
                    found = o;
                    break;
                }
            }
        }
        ErrnoException.check(found != null, Errno.EBADF, "fd " + fd + " is not open in context " + ctx.id());
        ErrnoException.check(found instanceof DmaBufHandle, Errno.EINVAL, "fd " + fd + " is a " + found.type()
                + ", not a dma-buf");
        return (DmaBufHandle) found;
    }

    /** {@code close(fd)}: drops the handle and its reference; {@code EBADF} for a handle that is not open. */
    public static void close(UContext ctx, int fd) {
        handle(ctx, fd);
        ctx.destroy(fd);
    }

    /**
     * The text of {@code /sys/kernel/debug/dma_buf/bufinfo}: per buffer its size, file flags and mode, reference
     * count, exporter name, inode number and name; the fences of its reservation with their usage; the attached
     * devices. dmaplane adds per buffer whether the exporter is dynamic and whether it is pinned or revoked, and
     * per attachment whether it is dynamic, may use peer-to-peer, its pins and mappings.
     */
    public String bufinfo() {
        StringBuilder sb = new StringBuilder();
        sb.append("\nDma-buf Objects:\n");
        sb.append(String.format("%-8s\t%-8s\t%-8s\t%-8s\texp_name\t%-8s\tname%n", "size", "flags", "mode", "count", "ino"));
        int count = 0;
        long total = 0;
        for (DmaBuf b : list()) {
            long refs = b.refCount();
            if (refs <= 0) {
                continue;
            }
            String name = b.name();
            sb.append(String.format("%08d\t%08x\t%08x\t%08d\t%s\t%08d\t%s%n", b.size(), 02, 03, refs,
                    b.exporterName(), b.ino(), name == null ? "<none>" : name));
            int pins = 0;
            for (Attachment a : b.attachments()) {
                pins += a.pinCount();
            }
            sb.append('\t').append(b.isDynamic() ? "dynamic" : "static").append(" exporter, ")
                    .append(b.isRevoked() ? "revoked" : pins > 0 ? "pinned (" + pins + ")" : "not pinned").append('\n');
            for (ResvFence f : b.resv().entries()) {
                Fence fence = f.fence();
                sb.append('\t').append(f.usage().name().toLowerCase()).append(" fence: ")
                        .append(fence.context().driverName()).append(' ').append(fence.context().timelineName())
                        .append(" seq ").append(fence.seqno()).append(' ')
                        .append(fence.isSignaled() ? "" : "un").append("signalled\n");
            }
            sb.append("\tAttached Devices:\n");
            int n = 0;
            for (Attachment a : b.attachments()) {
                sb.append('\t').append(a.device().name()).append(" (").append(a.isDynamic() ? "dynamic" : "static")
                        .append(a.peer2peer() ? ", p2p" : "").append(", pins ").append(a.pinCount())
                        .append(", mappings ").append(a.mappings().size()).append(")\n");
                n++;
            }
            sb.append("Total ").append(n).append(" devices attached\n\n");
            count++;
            total += b.size();
        }
        sb.append("\nTotal ").append(count).append(" objects, ").append(total).append(" bytes\n");
        return sb.toString();
    }
}
