package dev.dmaplane.dmabuf.heap;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.fence.Fences;
import dev.dmaplane.genalloc.GenPool;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.Optional;
import java.util.zip.CRC32;

/**
 * A dynamic exporter for tests and demos, shaped like a GPU driver's (amdgpu/xe with TTM): buffers live in the
 * GPU's memory BAR (VRAM) and can migrate to host memory and back, with real copies whose integrity is checked.
 * <p>
 * <b>Peer-to-peer</b>, as {@code amdgpu_dma_buf.c} decides it: the attach op asks p2pdma how far the GPU is from the
 * importer's device ({@code pci_p2pdma_distance}) and clears {@code attach->peer2peer} when the pair cannot do
 * peer-to-peer; the core has already cleared it for an importer that does not allow it (every static importer).
 * The map op, for a buffer in VRAM and an attachment that kept {@code peer2peer}, asks for the map type
 * ({@code pci_p2pdma_map_type}, as {@code dma_buf_phys_vec_to_sgt} does): {@code BUS_ADDR} hands out the BAR's bus
 * addresses, which the importer reaches through the switch without its IOMMU (tracked with
 * {@link dev.dmaplane.dma.DmaApi#mapPeer} so dma-debug can catch a stale use); {@code THRU_HOST_BRIDGE} maps the
 * VRAM through the importer's IOMMU with {@link dev.dmaplane.dma.DmaApi#mapResource}. Every decision is traced
 * ({@code DMA_BUF}, with the p2pdma reasons as {@code P2PDMA}).
 * <p>
 * <b>Importers that cannot reach VRAM</b> get the {@link Policy}. {@code MIGRATE_TO_HOST} is what amdgpu does: the
 * attach succeeds, and a map (or a pin, which must place the buffer where every attachment reaches it) moves the
 * buffer to system memory first, mapped through the importer's DMA API; a buffer that is pinned in VRAM cannot
 * move and the map fails with {@code EBUSY}. {@code REFUSE} models memory that cannot leave VRAM: attach, map and
 * pin fail while the buffer is in VRAM, with {@code EOPNOTSUPP} for an importer that does not allow peer-to-peer
 * at all (vfio-pci's answer for its MMIO-only dma-bufs) and {@code EBUSY} for one the fabric keeps out (what
 * {@code dma_buf_dynamic_attach} documents for storage the device cannot reach and that cannot be moved).
 * <p>
 * <b>Moves</b> ({@link #migrate}, reservation lock held): the new backing is allocated, a move fence is added with
 * {@code KERNEL} usage, {@code dma_buf_move_notify} tells dynamic importers (their mappings become
 * {@code MOVING}), and maps from then on point at the new backing. The copy runs on its own thread once the
 * fences that were pending before the move signal (the importers' in-flight work), compares CRC32s of what it
 * read and what it wrote, then retires the old mappings (device access cut: IOMMU translations removed, peer
 * windows revoked; bus addresses kept until the importers unmap) and frees the old backing before signalling the
 * fence; a failed copy sets {@code EIO} on the fence. The copy never takes the reservation lock, so a thread
 * waiting for the fence under that lock cannot deadlock it (the "Indefinite DMA Fences" rule). A move refuses with
 * {@code EBUSY} while the buffer is pinned. Freed VRAM is handed out again at once, as TTM does: only dma-debug
 * stands between an importer that keeps using a stale bus address and the next buffer's bytes.
 * <p>
 * <b>Revoke</b> ({@link #revoke}): importers get {@code moveNotify}, maps fail with {@code ENODEV}, and once every
 * fence of the reservation signalled ({@code BOOKKEEP} included, as TTM waits before freeing) every mapping is
 * retired and the backing freed, so no device reaches it. <b>Stop</b> ({@link #stop}, from the
 * driver's remove when the GPU unbinds or is unplugged, or the bundle stops): every buffer is revoked, and every
 * mapping an importer still holds afterwards is reported as a leak and torn down.
 * <p>
 * The peer-to-peer decisions, moves, revoke and stop are {@link P2pExporter}'s, which a GPU driver's memory manager
 * uses the same way; this class is its simplest user: VRAM handed out by a {@link GenPool} over the BAR, moves that
 * are CPU copies on a thread of their own.
 */
public final class VramExporter {
    /** What to do when an importer cannot reach VRAM. */
    public enum Policy {
        /** Move the buffer to host memory, which every device reaches through its IOMMU (amdgpu's behaviour). */
        MIGRATE_TO_HOST,
        /** Refuse the attach, map or pin while the buffer is in VRAM: {@code EOPNOTSUPP} or {@code EBUSY}. */
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
    private final FenceContext moves;
    private final String name;
    private final P2pExporter exporter;
    /** The BAR's bytes as VRAM offsets ({@code gen_pool_add} of the whole BAR). */
    private final GenPool pool = new GenPool();

    /**
     * @param p2p    the machine's p2pdma core, which judges the GPU against each importer
     * @param gpu    the exporting device; its memory BAR {@code barIndex} is the VRAM
     * @param policy what to do for importers that cannot reach VRAM
     */
    public VramExporter(DmaBufs registry, P2pDma p2p, PciFunction gpu, int barIndex, Policy policy) {
        ErrnoException.check(registry != null && p2p != null && gpu != null && policy != null, Errno.EINVAL,
                "VramExporter needs a registry, p2pdma, a GPU and a policy");
        this.registry = registry;
        this.tracer = registry.tracer();
        this.mem = registry.memory();
        this.gpu = gpu;
        this.bar = gpu.bar(barIndex).orElseThrow(() -> new ErrnoException(Errno.EINVAL, gpu.name() + " has no BAR " + barIndex));
        ErrnoException.check(bar.backing() instanceof Bar.Memory, Errno.EINVAL, gpu.name() + " BAR" + barIndex
                + " is a register block, not VRAM");
        this.vram = bar.memory();
        this.name = "vram:" + gpu.name();
        this.moves = FenceContext.allocate("dmaplane-vram", gpu.name() + " migration", tracer);
        this.exporter = new P2pExporter(registry, p2p, gpu, policy, name);
        pool.add(0, bar.size(), 0);
    }

    /** The exporter name in bufinfo. */
    public String name() {
        return name;
    }

    public Policy policy() {
        return exporter.policy();
    }

    /**
     * Allocates {@code size} bytes (rounded up to pages) of VRAM and exports them as a dynamic dma-buf.
     *
     * @throws ErrnoException {@code EINVAL} for a size below 1, {@code ENOMEM} when VRAM is full, {@code ENODEV}
     *                        once the exporter stopped
     */
    public DmaBuf allocate(long size) {
        ErrnoException.check(size > 0 && size <= bar.size(), Errno.EINVAL, name + ": size " + size + " is not 1.." + bar.size());
        long len = (size + HostMemory.PAGE_SIZE - 1) & ~(HostMemory.PAGE_SIZE - 1);
        ErrnoException.check(!exporter.isStopped(), Errno.ENODEV, name + " has stopped");
        VramBuffer b = new VramBuffer(allocVram(len));
        try {
            return exporter.export(b, null);
        } catch (RuntimeException e) {
            b.release();
            throw e;
        }
    }

    /**
     * Stops the exporter, as the GPU driver's remove does when its device unbinds or is unplugged (or its bundle
     * stops), without the reservation locks held: every buffer not yet released is revoked (dynamic importers get
     * {@code moveNotify} and may unmap from it; every mapping is retired), then each mapping an importer still holds
     * is reported as a leak naming the importer and the buffer and torn down ({@link DmaBuf#reclaimMappings}), and
     * the backing is freed; first it waits (bounded) for every fence of those buffers, {@code BOOKKEEP} included. Attachments stay until their importers detach; the buffers until their last reference
     * goes. Later allocations fail with {@code ENODEV}. Idempotent.
     *
     * @return the mappings that were still held and had to be torn down
     */
    public int stop(String reason) {
        return exporter.stop(reason);
    }

    /** Whether {@link #stop} ran. */
    public boolean isStopped() {
        return exporter.isStopped();
    }

    /** Where the buffer lives now ({@code VRAM}, {@code HOST}), or empty once revoked or released. */
    public Optional<Target> placement(DmaBuf buf) {
        return exporter.placement(buf);
    }

    /** The VRAM offset of a buffer in VRAM, for tests that look at the BAR directly. */
    public long vramOffset(DmaBuf buf) {
        ErrnoException.check(exporter.backing(buf).orElse(null) instanceof VramBuffer b && b.placement instanceof VramRange,
                Errno.EINVAL, buf + " is not in VRAM");
        return ((VramRange) ((VramBuffer) exporter.backing(buf).orElseThrow()).placement).offset;
    }

    /** VRAM bytes not allocated. */
    public long freeVram() {
        return pool.avail();
    }

    /**
     * Moves the buffer to {@code target} (reservation lock held). Returns the move fence (already signalled when
     * the buffer is there already); importers map again after it signals.
     *
     * @throws ErrnoException {@code EPERM} without the lock, {@code EBUSY} while pinned, {@code ENODEV} once
     *                        revoked, {@code ENOMEM} if the target has no room; nothing changes then
     */
    public Fence migrate(DmaBuf buf, Target target, String reason) {
        return exporter.migrate(buf, target, reason);
    }

    /**
     * Revokes the buffer (reservation lock held): maps fail with {@code ENODEV} from now on, importers are told, and
     * once every fence of the reservation signalled ({@code BOOKKEEP} included) all mappings are retired and the
     * VRAM freed; see {@link P2pExporter#revoke}.
     */
    public void revoke(DmaBuf buf, String reason) {
        exporter.revoke(buf, reason);
    }

    /** The copy of one move, on its own thread: after the fences, checked, then the old place retired and freed. */
    private void runMove(VramBuffer b, Placement from, Placement to, List<Fence> before, Runnable retire, Fence fence) {
        try {
            if (!Fences.awaitAll(before, registry.fenceTimeout())) {
                fence.setError(Errno.ETIMEDOUT);
            }
            synchronized (b) {
                if (b.placement == null) {
                    // revoked or released meanwhile: nothing to keep
                    to.free();
                } else if (!copyChecked(from, to, b.size)) {
                    fence.setError(Errno.EIO);
                }
                retire.run();
                from.free();
            }
        } catch (RuntimeException e) {
            fence.setError(e instanceof ErrnoException ee ? ee.errno() : Errno.EIO);
        } finally {
            fence.signal();
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

    private VramRange allocVram(long len) {
        long at = pool.alloc(len);
        if (at < 0) {
            throw new ErrnoException(Errno.ENOMEM, name + ": no " + len + " contiguous bytes of VRAM left");
        }
        return new VramRange(at, len);
    }

    /** One buffer's bytes: a VRAM range or host blocks, pinned by the exporter's pins. */
    private final class VramBuffer implements ExportBacking {
        final long size;
        volatile Placement placement;
        private int pins;

        VramBuffer(Placement p) {
            this.placement = p;
            this.size = p.size();
        }

        @Override
        public long size() {
            return size;
        }

        @Override
        public Location location() {
            Placement p = placement;
            if (p instanceof VramRange r) {
                return new InVram(bar.address() + r.offset, r.size, r.describe());
            }
            return p instanceof HostBacking h ? new InHost(h.sgTable(), h.describe()) : null;
        }

        @Override
        public PendingMove prepare(Target target) {
            synchronized (this) {
                ErrnoException.check(pins == 0, Errno.EBUSY, name + ": the buffer is pinned " + pins + " time(s) and cannot move");
            }
            Placement to = target == Target.VRAM ? allocVram(size) : HostBacking.allocate(mem, size);
            return new PendingMove() {
                @Override
                public String describe() {
                    return to.describe();
                }

                @Override
                public Fence start(List<Fence> after, Runnable retire, String reason) {
                    Fence fence = moves.createFence();
                    Placement from;
                    synchronized (VramBuffer.this) {
                        from = placement;
                        placement = to;
                    }
                    Thread.ofVirtual().name(name + "-move-" + fence.seqno())
                            .start(() -> runMove(VramBuffer.this, from, to, after, retire, fence));
                    return fence;
                }

                @Override
                public void cancel() {
                    to.free();
                }
            };
        }

        @Override
        public synchronized void pin() {
            pins++;
        }

        @Override
        public synchronized void unpin() {
            pins--;
        }

        @Override
        public synchronized void read(long offset, MemorySegment dst) {
            live().read(offset, dst);
        }

        @Override
        public synchronized void write(long offset, MemorySegment src) {
            live().write(offset, src);
        }

        private Placement live() {
            ErrnoException.check(placement != null, Errno.ENODEV, name + ": the buffer has no backing");
            return placement;
        }

        @Override
        public synchronized void release() {
            if (placement != null) {
                placement.free();
                placement = null;
            }
        }
    }

    /** A range of the BAR handed out by the pool. */
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
        public synchronized void free() {
            if (!freed) {
                freed = true;
                pool.free(offset, size);
            }
        }

        @Override
        public String describe() {
            return String.format("VRAM %s BAR%d +%#x", gpu.name(), bar.index(), offset);
        }
    }
}
