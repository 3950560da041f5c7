package dev.dmaplane.dmabuf.heap;

import dev.dmaplane.device.Device;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.ExportInfo;
import dev.dmaplane.dmabuf.Exporter;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.fence.Fences;
import dev.dmaplane.fence.Reservation;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;

import java.lang.foreign.MemorySegment;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.zip.CRC32;

/**
 * A dynamic exporter for tests and demos, shaped like a GPU driver's (amdgpu/xe with TTM): buffers live in the
 * GPU's memory BAR (VRAM) and can migrate to host memory and back, with real copies whose integrity is checked.
 * <p>
 * <b>Moves</b> ({@link #migrate}, reservation lock held): the new backing is allocated, a move fence is added with
 * {@code KERNEL} usage, {@code dma_buf_move_notify} tells dynamic importers (their mappings become
 * {@code MOVING}), and maps from then on point at the new backing. The copy runs on its own thread once the
 * fences that were pending before the move signal (the importers' in-flight work), compares CRC32s of what it
 * read and what it wrote, then retires the old mappings (device access cut, IOVAs kept until the importers unmap)
 * and frees the old backing before signalling the fence; a failed copy sets {@code EIO} on the fence. The copy
 * never takes the reservation lock, so a thread waiting for the fence under that lock cannot deadlock it (the
 * "Indefinite DMA Fences" rule). A move refuses with {@code EBUSY} while the buffer is pinned.
 * <p>
 * <b>Peer-to-peer</b>: an importer reaches VRAM only with peer-to-peer DMA; this exporter does not map VRAM for
 * other devices yet (no p2pdma provider is wired in), so every importer attaches with {@code peer2peer} cleared
 * and the {@link Policy} decides: migrate the buffer to host memory, or refuse the attach with {@code EBUSY}
 * (the errno {@code dma_buf_dynamic_attach} documents for storage a device cannot reach). The choice is traced.
 * <p>
 * <b>Revoke</b> ({@link #revoke}): importers get {@code moveNotify}, every mapping is retired at once, maps fail
 * with {@code ENODEV} and the backing is freed, so no device reaches it.
 */
public final class VramExporter {
    /** What to do when an importer cannot reach VRAM. */
    public enum Policy {
        /** Move the buffer to host memory, which every device reaches through its IOMMU. */
        MIGRATE_TO_HOST,
        /** Refuse the attach (or map) with {@code EBUSY}. */
        REFUSE
    }

    /** Where a buffer should go. */
    public enum Target { VRAM, HOST }

    private static final long CHUNK = 256 * 1024;

    private final DmaBufs registry;
    private final Tracer tracer;
    private final HostMemory mem;
    private final PciFunction gpu;
    private final Bar bar;
    private final Bar.Memory vram;
    private final Policy policy;
    private final FenceContext moves;
    private final String name;
    /** Free VRAM ranges: offset -> size; guarded by itself. */
    private final TreeMap<Long, Long> free = new TreeMap<>();

    /**
     * @param gpu   the exporting device; its memory BAR {@code barIndex} is the VRAM
     * @param policy what to do for importers that cannot reach VRAM
     */
    public VramExporter(DmaBufs registry, PciFunction gpu, int barIndex, Policy policy) {
        this.registry = Objects.requireNonNull(registry, "registry");
        this.tracer = registry.tracer();
        this.mem = registry.memory();
        this.gpu = Objects.requireNonNull(gpu, "gpu");
        this.bar = gpu.bar(barIndex).orElseThrow(() -> new ErrnoException(Errno.EINVAL, gpu.name() + " has no BAR " + barIndex));
        this.vram = bar.memory();
        this.policy = Objects.requireNonNull(policy, "policy");
        this.name = "vram:" + gpu.name();
        this.moves = FenceContext.allocate("dmaplane-vram", gpu.name() + " migration", tracer);
        free.put(0L, bar.size());
    }

    /** The exporter name in bufinfo. */
    public String name() {
        return name;
    }

    public Policy policy() {
        return policy;
    }

    /**
     * Allocates {@code size} bytes (rounded up to pages) of VRAM and exports them as a dynamic dma-buf.
     *
     * @throws ErrnoException {@code EINVAL} for a size below 1, {@code ENOMEM} when VRAM is full
     */
    public DmaBuf allocate(long size) {
        ErrnoException.check(size > 0 && size <= bar.size(), Errno.EINVAL, name + ": size " + size + " is not 1.." + bar.size());
        long len = (size + HostMemory.PAGE_SIZE - 1) & ~(HostMemory.PAGE_SIZE - 1);
        VramRange r = allocVram(len);
        Buffer b = new Buffer(r);
        try {
            b.dmabuf = registry.export(ExportInfo.of(name, len, ops(b)).withPriv(b));
        } catch (RuntimeException e) {
            r.free();
            throw e;
        }
        return b.dmabuf;
    }

    /** Where the buffer lives now ({@code VRAM}, {@code HOST}), or empty once revoked or released. */
    public java.util.Optional<Target> placement(DmaBuf buf) {
        Placement p = buffer(buf).placement;
        return p == null ? java.util.Optional.empty() : java.util.Optional.of(p instanceof VramRange ? Target.VRAM : Target.HOST);
    }

    /** The VRAM offset of a buffer in VRAM, for tests that look at the BAR directly. */
    public long vramOffset(DmaBuf buf) {
        ErrnoException.check(buffer(buf).placement instanceof VramRange, Errno.EINVAL, buf + " is not in VRAM");
        return ((VramRange) buffer(buf).placement).offset;
    }

    /** VRAM bytes not allocated. */
    public long freeVram() {
        synchronized (free) {
            return free.values().stream().mapToLong(Long::longValue).sum();
        }
    }

    /**
     * Moves the buffer to {@code target} (reservation lock held). Returns the move fence (already signalled when
     * the buffer is there already); importers map again after it signals.
     *
     * @throws ErrnoException {@code EPERM} without the lock, {@code EBUSY} while pinned, {@code ENODEV} once
     *                        revoked, {@code ENOMEM} if the target has no room; nothing changes then
     */
    public Fence migrate(DmaBuf buf, Target target, String reason) {
        Buffer b = buffer(buf);
        Reservation resv = buf.resv();
        ErrnoException.check(resv.isHeldByCurrentThread(), Errno.EPERM, name + ": migrate of " + buf
                + " without holding its reservation lock");
        ErrnoException.check(!buf.isRevoked() && b.placement != null, Errno.ENODEV, name + ": " + buf + " was revoked");
        Fence fence = moves.createFence();
        Placement from = b.placement;
        if ((target == Target.VRAM) == (from instanceof VramRange)) {
            fence.signal();
            return fence;
        }
        ErrnoException.check(b.pins == 0, Errno.EBUSY, name + ": " + buf + " is pinned " + b.pins + " time(s) and cannot move");
        Placement to = target == Target.VRAM ? allocVram(buf.size()) : HostBacking.allocate(mem, buf.size());
        try {
            resv.reserveFences(1);
        } catch (RuntimeException e) {
            to.free();
            throw e;
        }
        var before = resv.fences(ResvUsage.BOOKKEEP);
        resv.addFence(fence, ResvUsage.KERNEL);
        long generation = buf.moveNotify();
        synchronized (b) {
            b.placement = to;
        }
        tracer.emit(TraceKind.DMA_BUF, name, -1, buf.size(), "migrate dma-buf " + buf.ino() + " " + from.describe()
                + " -> " + to.describe() + ": " + reason + " (fence " + fence.seqno() + ")");
        buf.get();
        Thread.ofVirtual().name(name + "-move-" + fence.seqno()).start(() -> runMove(b, from, to, before, generation, fence));
        return fence;
    }

    private void runMove(Buffer b, Placement from, Placement to, java.util.List<Fence> before, long generation, Fence fence) {
        DmaBuf buf = b.dmabuf;
        try {
            if (!Fences.awaitAll(before, registry.fenceTimeout())) {
                fence.setError(Errno.ETIMEDOUT);
            }
            synchronized (b) {
                if (b.placement == null) {
                    // revoked or released meanwhile: nothing to keep
                    to.free();
                } else if (!copyChecked(from, to, buf.size())) {
                    fence.setError(Errno.EIO);
                }
                buf.retireMappings(generation, "moved from " + from.describe() + " to " + to.describe());
                from.free();
            }
        } catch (RuntimeException e) {
            fence.setError(e instanceof ErrnoException ee ? ee.errno() : Errno.EIO);
        } finally {
            tracer.emit(TraceKind.DMA_BUF, name, -1, buf.size(), "migration of dma-buf " + buf.ino() + " done"
                    + fence.error().map(e -> " with error " + e).orElse(", data verified"));
            fence.signal();
            buf.put();
        }
    }

    /** Copies {@code size} bytes and checks the copy by CRC32 of the source and of the destination read back. */
    private static boolean copyChecked(Placement from, Placement to, long size) {
        CRC32 src = new CRC32();
        CRC32 dst = new CRC32();
        byte[] chunk = new byte[(int) Math.min(CHUNK, size)];
        byte[] back = new byte[chunk.length];
        for (long off = 0; off < size; off += chunk.length) {
            int n = (int) Math.min(chunk.length, size - off);
            MemorySegment c = MemorySegment.ofArray(chunk).asSlice(0, n);
            from.read(off, c);
            src.update(chunk, 0, n);
            to.write(off, c);
            MemorySegment r = MemorySegment.ofArray(back).asSlice(0, n);
            to.read(off, r);
            dst.update(back, 0, n);
        }
        return src.getValue() == dst.getValue();
    }

    /**
     * Revokes the buffer (reservation lock held): importers are told, all mappings are retired, maps fail with
     * {@code ENODEV} from now on, and the backing is freed.
     */
    public void revoke(DmaBuf buf, String reason) {
        Buffer b = buffer(buf);
        ErrnoException.check(buf.resv().isHeldByCurrentThread(), Errno.EPERM, name + ": revoke of " + buf
                + " without holding its reservation lock");
        buf.revoke(reason);
        synchronized (b) {
            if (b.placement != null) {
                b.placement.free();
                b.placement = null;
            }
        }
    }

    // ---------------------------------------------------------------- ops

    private Exporter ops(Buffer b) {
        return Exporter.builder()
                .attach((buf, a) -> attach(b, a))
                .map((a, dir) -> {
                    Placement p = reachable(b, a, "map");
                    return a.device().dma().mapSg(((HostBacking) p).sgTable(), dir);
                })
                .unmap((a, sg, dir) -> a.device().dma().unmapSg(sg, dir))
                .pin(a -> {
                    synchronized (b) {
                        b.pins++;
                    }
                })
                .unpin(a -> {
                    synchronized (b) {
                        ErrnoException.check(b.pins > 0, Errno.EINVAL, name + ": unpin without a pin");
                        b.pins--;
                    }
                })
                .release(buf -> {
                    synchronized (b) {
                        if (b.placement != null) {
                            b.placement.free();
                            b.placement = null;
                        }
                    }
                })
                .cpuRead((buf, off, dst) -> cpu(b, off, dst, false))
                .cpuWrite((buf, off, src) -> cpu(b, off, src, true))
                .build();
    }

    private void attach(Buffer b, Attachment a) {
        String why = p2pRefusal(a.device());
        a.setPeer2Peer(false);
        if (!(b.placement instanceof VramRange)) {
            return;
        }
        DmaBuf buf = b.dmabuf;
        if (policy == Policy.REFUSE) {
            tracer.emit(TraceKind.DMA_BUF, a.device().name(), -1, buf.size(), name + " refuses attach of dma-buf "
                    + buf.ino() + ": " + why + "; policy REFUSE");
            throw new ErrnoException(Errno.EBUSY, name + ": " + a.device().name() + " cannot reach dma-buf " + buf.ino()
                    + " in VRAM (" + why + ") and the policy is to refuse");
        }
        tracer.emit(TraceKind.DMA_BUF, a.device().name(), -1, buf.size(), name + ": " + why
                + "; policy MIGRATE_TO_HOST moves dma-buf " + buf.ino() + " to system memory");
        buf.resv().lock();
        try {
            migrate(buf, Target.HOST, "attach of " + a.device().name() + " without peer-to-peer");
        } finally {
            buf.resv().unlock();
        }
    }

    /** The host placement an attachment can map, migrating (or refusing) per the policy when the buffer is in VRAM. */
    private Placement reachable(Buffer b, Attachment a, String what) {
        DmaBuf buf = b.dmabuf;
        if (b.placement instanceof VramRange) {
            String why = p2pRefusal(a.device());
            if (policy == Policy.REFUSE) {
                tracer.emit(TraceKind.DMA_BUF, a.device().name(), -1, buf.size(), name + " refuses " + what + " of dma-buf "
                        + buf.ino() + ": " + why + "; policy REFUSE");
                throw new ErrnoException(Errno.EBUSY, name + ": " + a.device().name() + " cannot reach dma-buf "
                        + buf.ino() + " in VRAM (" + why + ")");
            }
            tracer.emit(TraceKind.DMA_BUF, a.device().name(), -1, buf.size(), name + ": " + why
                    + "; policy MIGRATE_TO_HOST moves dma-buf " + buf.ino() + " to system memory for " + what);
            migrate(buf, Target.HOST, what + " by " + a.device().name() + " without peer-to-peer");
        }
        ErrnoException.check(b.placement != null, Errno.ENODEV, name + ": dma-buf " + buf.ino() + " has no backing");
        return b.placement;
    }

    /** Why {@code importer} cannot reach the GPU's BAR directly; this exporter has no peer-to-peer provider yet. */
    private String p2pRefusal(Device importer) {
        return "peer-to-peer from " + gpu.name() + " BAR" + bar.index() + " to " + importer.name()
                + " is not available to this exporter";
    }

    private void cpu(Buffer b, long off, MemorySegment data, boolean write) {
        DmaBuf buf = b.dmabuf;
        ErrnoException.check(buf.resv().await(ResvUsage.KERNEL, registry.fenceTimeout()), Errno.ETIMEDOUT,
                name + ": the move of dma-buf " + buf.ino() + " did not finish in time");
        synchronized (b) {
            ErrnoException.check(b.placement != null, Errno.ENODEV, name + ": dma-buf " + buf.ino() + " has no backing");
            if (write) {
                b.placement.write(off, data);
            } else {
                b.placement.read(off, data);
            }
        }
    }

    private Buffer buffer(DmaBuf buf) {
        ErrnoException.check(buf != null && buf.priv() instanceof Buffer b && b.owner() == this, Errno.EINVAL,
                name + ": " + buf + " is not one of this exporter's buffers");
        return (Buffer) buf.priv();
    }

    // ---------------------------------------------------------------- VRAM ranges

    private VramRange allocVram(long len) {
        synchronized (free) {
            for (Map.Entry<Long, Long> e : free.entrySet()) {
                if (e.getValue() >= len) {
                    long off = e.getKey();
                    free.remove(off);
                    if (e.getValue() > len) {
                        free.put(off + len, e.getValue() - len);
                    }
                    return new VramRange(off, len);
                }
            }
        }
        throw new ErrnoException(Errno.ENOMEM, name + ": no " + len + " contiguous bytes of VRAM left");
    }

    private final class Buffer {
        volatile Placement placement;
        DmaBuf dmabuf;
        int pins;

        Buffer(Placement p) {
            this.placement = p;
        }

        VramExporter owner() {
            return VramExporter.this;
        }
    }

    private final class VramRange implements Placement {
        final long offset;
        final long size;
        private boolean freed;

        VramRange(long offset, long size) {
            this.offset = offset;
            this.size = size;
        }

        @Override
        public long size() {
            return size;
        }

        @Override
        public void read(long off, MemorySegment dst) {
            vram.read(offset + off, dst);
        }

        @Override
        public void write(long off, MemorySegment src) {
            vram.write(offset + off, src);
        }

        @Override
        public void free() {
            synchronized (free) {
                if (freed) {
                    return;
                }
                freed = true;
                long start = offset;
                long len = size;
                Map.Entry<Long, Long> below = free.floorEntry(start);
                if (below != null && below.getKey() + below.getValue() == start) {
                    free.remove(below.getKey());
                    start = below.getKey();
                    len += below.getValue();
                }
                Long above = free.get(start + len);
                if (above != null) {
                    free.remove(start + len);
                    len += above;
                }
                free.put(start, len);
            }
        }

        @Override
        public String describe() {
            return String.format("VRAM %s BAR%d +%#x", gpu.name(), bar.index(), offset);
        }
    }
}
