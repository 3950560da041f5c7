package dev.dmaplane.dmabuf.heap;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.dma.SgEntry;
import dev.dmaplane.dma.SgTable;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.ExportInfo;
import dev.dmaplane.dmabuf.Exporter;
import dev.dmaplane.dmabuf.Importer;
import dev.dmaplane.dmabuf.PhysVec;
import dev.dmaplane.dmabuf.heap.ExportBacking.InHost;
import dev.dmaplane.dmabuf.heap.ExportBacking.InVram;
import dev.dmaplane.dmabuf.heap.ExportBacking.Location;
import dev.dmaplane.dmabuf.heap.ExportBacking.PendingMove;
import dev.dmaplane.dmabuf.heap.VramExporter.Policy;
import dev.dmaplane.dmabuf.heap.VramExporter.Target;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.fence.FenceContext;
import dev.dmaplane.fence.Fences;
import dev.dmaplane.fence.Reservation;
import dev.dmaplane.fence.ResvUsage;
import dev.dmaplane.p2pdma.MapType;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.p2pdma.P2pPath;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.function.Consumer;

/**
 * The peer-to-peer half of a GPU driver's dma-buf exporter ({@code amdgpu_dma_buf.c}, xe's {@code xe_dma_buf.c}),
 * over any {@link ExportBacking}: a buffer in the exporting function's VRAM BAR or in host pages that its memory
 * manager can move between the two.
 * <p>
 * <b>Peer-to-peer</b>: the attach op asks p2pdma how far the exporting function is from the importer's device
 * ({@code pci_p2pdma_distance}) and clears {@code attach->peer2peer} when the pair cannot do peer-to-peer; the core
 * has already cleared it for an importer that does not allow it (every static importer). The map op, for a buffer
 * in VRAM and an attachment that kept {@code peer2peer}, asks for the map type ({@code pci_p2pdma_map_type}, as
 * {@code dma_buf_phys_vec_to_sgt} does): {@code BUS_ADDR} hands out the BAR's bus addresses, which the importer
 * reaches through the switch without its IOMMU (tracked with {@link DmaApi#mapPeer} so dma-debug can catch a stale
 * use); {@code THRU_HOST_BRIDGE} maps the VRAM through the importer's IOMMU with {@link DmaApi#mapResource}. Every
 * decision is traced ({@code DMA_BUF}, with the p2pdma reasons as {@code P2PDMA}).
 * <p>
 * <b>Importers that cannot reach VRAM</b> get the {@link Policy}: {@code MIGRATE_TO_HOST} (amdgpu's) lets the attach
 * succeed and makes a map, or a pin, move the buffer to host memory first (a buffer pinned in VRAM cannot move: the
 * map fails with {@code EBUSY}); {@code REFUSE} fails attach, map and pin while the buffer is in VRAM, with
 * {@code EOPNOTSUPP} for an importer that does not allow peer-to-peer at all and {@code EBUSY} for one the fabric
 * keeps out. A buffer is pinned in VRAM only while every attachment reaches it peer-to-peer.
 * <p>
 * <b>Moves</b> ({@link #migrate}, reservation lock held): the backing finds room at the target, the move fence is
 * added with {@code KERNEL} usage, {@code dma_buf_move_notify} tells dynamic importers (their mappings become
 * {@code MOVING}), and maps from then on point at the new place. The backing copies once every fence that was
 * pending before the move signalled (BOOKKEEP included), then the old mappings are retired (device access cut) and
 * the old place freed before the fence signals. A move refuses with {@code EBUSY} while the buffer is pinned.
 * <p>
 * <b>Revoke</b> ({@link #revoke}) and <b>stop</b> ({@link #stop}, from the driver's remove) as {@link VramExporter}
 * documents them.
 * <p>Size: about 540 lines, over the project's 500, because attach, map, pin, move, revoke and stop are one protocol
 * over one state (the exported buffers, their attachments and mappings, and the move generation each mapping
 * belongs to) that every op reads under the buffer's reservation lock; splitting it would hand that state to a
 * second class.
 */
public final class P2pExporter {
    private static final Logger LOG = LoggerFactory.getLogger(P2pExporter.class);

    private final DmaBufs registry;
    private final P2pDma p2p;
    private final Tracer tracer;
    private final PciFunction function;
    private final Policy policy;
    private final String name;
    private final FenceContext moves;
    /** Buffers exported and not yet released; guarded by itself, as is {@link #stopped}. */
    private final Set<Exported> live = new LinkedHashSet<>();
    private boolean stopped;

    /**
     * @param p2p      the machine's p2pdma core, which judges the exporting function against each importer
     * @param function the exporting device, whose memory BAR holds the VRAM
     * @param policy   what to do for importers that cannot reach VRAM
     * @param name     the exporter name in bufinfo ({@code exp_name})
     */
    public P2pExporter(DmaBufs registry, P2pDma p2p, PciFunction function, Policy policy, String name) {
        ErrnoException.check(registry != null && p2p != null && function != null && policy != null && name != null,
                Errno.EINVAL, "P2pExporter needs a registry, p2pdma, a function, a policy and a name");
        this.registry = registry;
        this.p2p = p2p;
        this.tracer = registry.tracer();
        this.function = function;
        this.policy = policy;
        this.name = name;
        this.moves = FenceContext.allocate("dmaplane-p2p", name + " migration", tracer);
    }

    public String name() {
        return name;
    }

    public Policy policy() {
        return policy;
    }

    /**
     * Exports {@code backing} as a dynamic dma-buf ({@code drm_gem_prime_export} with the driver's ops) whose
     * reservation is {@code resv} (the buffer object's own, as {@code obj->resv}), or a new one when null.
     *
     * @throws ErrnoException {@code ENODEV} once the exporter stopped; the registry's errno
     */
    public DmaBuf export(ExportBacking backing, Reservation resv) {
        ErrnoException.check(backing != null, Errno.EINVAL, name + ": export without a backing");
        synchronized (live) {
            ErrnoException.check(!stopped, Errno.ENODEV, name + " has stopped");
            Exported e = new Exported(backing);
            ExportInfo info = ExportInfo.of(name, backing.size(), ops(e)).withPriv(e);
            e.dmabuf = registry.export(resv == null ? info : info.withResv(resv));
            live.add(e);
            return e.dmabuf;
        }
    }

    /** The exporting device, whose memory BAR backs this exporter's buffers while they are in device memory. */
    public PciFunction function() {
        return function;
    }

    /**
     * The device that exported {@code buf} when a {@code P2pExporter} did (as the GEM object behind a PRIME export
     * knows its {@code drm_device}; {@code struct dma_buf} itself carries only {@code exp_name}), or empty for a
     * buffer of another exporter (a heap, udmabuf).
     *
     * @throws ErrnoException {@code EINVAL} for a null buffer
     */
    public static Optional<PciFunction> exportingFunction(DmaBuf buf) {
        ErrnoException.check(buf != null, Errno.EINVAL, "exportingFunction of a null dma-buf");
        return buf.priv() instanceof Exported e ? Optional.of(e.owner().function) : Optional.empty();
    }

    /** The backing of one of this exporter's buffers, or empty for another exporter's dma-buf or one released. */
    public Optional<ExportBacking> backing(DmaBuf buf) {
        return buf != null && buf.priv() instanceof Exported e && e.owner() == this ? Optional.ofNullable(e.backing)
                : Optional.empty();
    }

    /**
     * Stops the exporter, as a GPU driver's remove does when its device unbinds or is unplugged (or its bundle
     * stops), without the reservation locks held: every buffer not yet released is revoked (dynamic importers get
     * {@code moveNotify}; every mapping is retired), then each mapping an importer still holds is reported as a leak
     * naming the importer and the buffer and torn down ({@link DmaBuf#reclaimMappings}), and the backing released.
     * Between the two it waits (bounded by the registry's fence timeout, without the reservation locks) for every
     * fence of the revoked buffers, {@code BOOKKEEP} included, so importers' DMA in flight finishes on live
     * mappings. Later exports fail with {@code ENODEV}. Idempotent.
     *
     * @return the mappings that were still held and had to be torn down
     */
    public int stop(String reason) {
        List<Exported> all;
        synchronized (live) {
            stopped = true;
            all = List.copyOf(live);
        }
        String why = name + " stopped: " + reason;
        List<Fence> busy = new ArrayList<>();
        for (Exported e : all) {
            DmaBuf buf = e.dmabuf;
            buf.resv().lock();
            try {
                if (!buf.isReleased()) {
                    busy.add(revokeLocked(e, why));
                }
            } catch (ErrnoException ex) {
                // released meanwhile (EBADF): nothing is left to stop
                tracer.emit(TraceKind.DMA_BUF, name, -1, buf.size(), why + ": dma-buf " + buf.ino() + " skipped: " + ex.getMessage());
            } finally {
                buf.resv().unlock();
            }
        }
        // TTM's eviction rule: the importers' DMA that the fences cover finishes first; waited for without the locks
        if (!Fences.awaitAll(busy, registry.fenceTimeout())) {
            LOG.error("{}: fences of revoked dma-bufs still pending after {}; tearing their mappings down anyway", why,
                    registry.fenceTimeout());
        }
        int leaked = 0;
        for (Exported e : all) {
            DmaBuf buf = e.dmabuf;
            buf.resv().lock();
            try {
                if (!buf.isReleased()) {
                    buf.retireMappings(Long.MAX_VALUE, why);
                    leaked += buf.reclaimMappings(why);
                }
            } catch (ErrnoException ex) {
                tracer.emit(TraceKind.DMA_BUF, name, -1, buf.size(), why + ": dma-buf " + buf.ino() + " skipped: " + ex.getMessage());
            } finally {
                buf.resv().unlock();
            }
            e.release();
        }
        tracer.emit(TraceKind.DMA_BUF, name, -1, 0, why + "; " + all.size() + " dma-buf(s) revoked, " + leaked
                + " mapping(s) still held were torn down");
        return leaked;
    }

    /** Whether {@link #stop} ran. */
    public boolean isStopped() {
        synchronized (live) {
            return stopped;
        }
    }

    /** Where the buffer lives now ({@code VRAM}, {@code HOST}), or empty once revoked or released. */
    public Optional<Target> placement(DmaBuf buf) {
        Location l = exported(buf).location();
        return l == null ? Optional.empty() : Optional.of(l instanceof InVram ? Target.VRAM : Target.HOST);
    }

    /**
     * Moves the buffer to {@code target} (reservation lock held). Returns the move fence (already signalled when
     * the buffer is there already); importers map again after it signals.
     *
     * @throws ErrnoException {@code EPERM} without the lock, {@code EBUSY} while pinned, {@code ENODEV} once
     *                        revoked, {@code ENOMEM} if the target has no room; nothing changes then
     */
    public Fence migrate(DmaBuf buf, Target target, String reason) {
        Exported e = exported(buf);
        Reservation resv = buf.resv();
        ErrnoException.check(resv.isHeldByCurrentThread(), Errno.EPERM, name + ": migrate of " + buf
                + " without holding its reservation lock");
        Location from = e.location();
        ErrnoException.check(!buf.isRevoked() && from != null, Errno.ENODEV, name + ": " + buf + " was revoked");
        if ((target == Target.VRAM) == (from instanceof InVram)) {
            Fence there = moves.createFence();
            there.signal();
            return there;
        }
        ErrnoException.check(e.pins == 0, Errno.EBUSY, name + ": " + buf + " is pinned " + e.pins + " time(s) and cannot move");
        PendingMove move = e.backing.prepare(target);
        try {
            resv.reserveFences(1);
        } catch (RuntimeException ex) {
            move.cancel();
            throw ex;
        }
        // the copy also waits for a gate opened once the importers were told, so it retires the right generation
        Fence gate = moves.createFence();
        List<Fence> after = new ArrayList<>(resv.fences(ResvUsage.BOOKKEEP));
        after.add(gate);
        long[] generation = new long[1];
        String fromText = from.describe();
        String toText = move.describe();
        buf.get();
        Fence fence;
        try {
            fence = move.start(after, () -> buf.retireMappings(generation[0], "moved from " + fromText + " to " + toText),
                    reason);
        } catch (RuntimeException ex) {
            buf.put();
            gate.signal();
            throw ex;
        }
        resv.addFence(fence, ResvUsage.KERNEL);
        try {
            generation[0] = buf.moveNotify();
        } finally {
            gate.signal();
        }
        tracer.emit(TraceKind.DMA_BUF, name, -1, buf.size(), "migrate dma-buf " + buf.ino() + " " + fromText
                + " -> " + toText + ": " + reason + " (fence " + fence.seqno() + ")");
        if (!fence.addCallback(f -> done(buf, f))) {
            done(buf, fence);
        }
        return fence;
    }

    private void done(DmaBuf buf, Fence fence) {
        tracer.emit(TraceKind.DMA_BUF, name, -1, buf.size(), "migration of dma-buf " + buf.ino() + " done"
                + fence.error().map(err -> " with error " + err).orElse(", data verified"));
        buf.put();
    }

    /**
     * Revokes the buffer (reservation lock held): maps fail with {@code ENODEV} from now on and importers are told;
     * once every fence of the reservation signalled, {@code BOOKKEEP} included (TTM's rule before a backing is
     * freed, {@code dma_resv_usage}), all mappings are retired and then the backing is released. Until then the
     * importers' mappings keep working. Nothing waits here: the fences' signalling finishes the revoke.
     */
    public void revoke(DmaBuf buf, String reason) {
        Exported e = exported(buf);
        ErrnoException.check(buf.resv().isHeldByCurrentThread(), Errno.EPERM, name + ": revoke of " + buf
                + " without holding its reservation lock");
        revokeLocked(e, reason);
    }

    /** Revokes; returns the fence after which the mappings are retired and the backing released. */
    private Fence revokeLocked(Exported e, String reason) {
        DmaBuf buf = e.dmabuf;
        Fence idle = Fences.all(buf.resv().fences(ResvUsage.BOOKKEEP));
        buf.revoke(reason);
        Consumer<Fence> finish = f -> {
            buf.retireMappings(Long.MAX_VALUE, "revoked: " + reason);
            e.release();
        };
        if (!idle.addCallback(finish)) {
            finish.accept(idle);
        }
        return idle;
    }

    private Exporter ops(Exported e) {
        return Exporter.builder()
                .attach((buf, a) -> attach(e, a))
                .map((a, dir) -> map(e, a, dir))
                .unmap((a, sg, dir) -> unmap(e, a, sg, dir))
                .revokeMapping((a, sg, dir, why) -> cutAccess(e, a, sg, dir, why))
                .pin(a -> pin(e, a))
                .unpin(a -> {
                    synchronized (e) {
                        ErrnoException.check(e.pins > 0, Errno.EINVAL, name + ": unpin without a pin");
                        e.pins--;
                    }
                    ExportBacking b = e.backing;
                    if (b != null) {
                        b.unpin();
                    }
                })
                .release(buf -> {
                    // as TTM's delayed delete: the memory goes back once the last fences signalled
                    Fence idle = Fences.all(buf.resv().fences(ResvUsage.BOOKKEEP));
                    if (!idle.addCallback(f -> e.release())) {
                        e.release();
                    }
                    synchronized (live) {
                        live.remove(e);
                    }
                })
                .cpuRead((buf, off, dst) -> cpu(e, off, dst, false))
                .cpuWrite((buf, off, src) -> cpu(e, off, src, true))
                .phys(a -> phys(e, a))
                .build();
    }

    /**
     * {@code amdgpu_dma_buf_attach}: judges the pair and clears {@code peer2peer} when p2pdma says no; the REFUSE
     * policy turns away an importer that cannot reach the buffer where it is now.
     */
    private void attach(Exported e, Attachment a) {
        ErrnoException.check(!isStopped(), Errno.ENODEV, name + " has stopped");
        DmaBuf buf = e.dmabuf;
        Device dev = a.device();
        if (a.importer().map(Importer::physical).orElse(false)) {
            tracer.emit(TraceKind.DMA_BUF, dev.name(), -1, buf.size(), name + ": attach to dma-buf " + buf.ino()
                    + " for physical ranges: the importer maps them in its own IOMMU domain");
            return;
        }
        boolean wanted = a.peer2peer();
        P2pPath path = p2p.distance(function, List.of(dev)).paths().getFirst();
        if (path.mapType() == MapType.NOT_SUPPORTED) {
            a.setPeer2Peer(false);
        }
        if (a.peer2peer()) {
            a.setExporterPriv(null);
            tracer.emit(TraceKind.DMA_BUF, dev.name(), -1, buf.size(), name + ": attach to dma-buf " + buf.ino()
                    + " with peer-to-peer " + path.mapType() + " (" + path.reason() + ")");
            return;
        }
        String why = !wanted
                ? (a.isDynamic() ? "the importer does not allow peer-to-peer" : "a static importer takes no peer-to-peer addresses")
                : path.reason();
        a.setExporterPriv(why);
        if (policy == Policy.REFUSE && e.location() instanceof InVram) {
            throw refusal(buf, a, "attach", why);
        }
        tracer.emit(TraceKind.DMA_BUF, dev.name(), -1, buf.size(), name + ": attach to dma-buf " + buf.ino()
                + " without peer-to-peer (" + why + "); policy " + policy + (policy == Policy.MIGRATE_TO_HOST
                ? ": a map moves the buffer to system memory while it is in VRAM" : ": maps are refused while it is in VRAM"));
    }

    /** {@code amdgpu_dma_buf_map}: VRAM peer-to-peer when the attachment may, else host memory (per the policy). */
    private MappedSg map(Exported e, Attachment a, DmaDirection dir) {
        DmaBuf buf = e.dmabuf;
        Location l = e.location();
        ErrnoException.check(l != null, Errno.ENODEV, name + ": dma-buf " + buf.ino() + " has no backing");
        if (l instanceof InVram v) {
            String why = noP2p(a);
            if (a.peer2peer()) {
                MapType type = p2p.mapType(function, a.device());
                if (type != MapType.NOT_SUPPORTED) {
                    return mapVram(e, a, v, type, dir);
                }
                why = "p2pdma no longer allows peer-to-peer between " + function.name() + " and " + a.device().name();
            }
            l = leaveVram(e, a, "map", why);
        }
        return a.device().dma().mapSg(((InHost) l).pages(), dir);
    }

    private MappedSg mapVram(Exported e, Attachment a, InVram v, MapType type, DmaDirection dir) {
        DmaApi dma = a.device().dma();
        long bus = v.busAddress();
        long addr = type == MapType.BUS_ADDR ? dma.mapPeer(bus, v.size(), dir) : dma.mapResource(bus, v.size(), dir);
        MappedSg sg = new MappedSg(new SgTable(List.of(new SgEntry(bus, v.size()))), dir, List.of(new DmaSegment(addr, v.size())));
        e.vramMappings.put(sg, type);
        if (tracer.isEnabled()) {
            tracer.emit(TraceKind.DMA_BUF, a.device().name(), addr, v.size(), name + ": dma-buf " + e.dmabuf.ino() + " stays in "
                    + v.describe() + ", mapped " + type + (type == MapType.BUS_ADDR
                    ? String.format(" at bus address %#x: the switch routes it, no IOMMU", bus)
                    : String.format(" at IOVA %#x through the host bridge and the importer's IOMMU", addr)));
        }
        return sg;
    }

    private void unmap(Exported e, Attachment a, MappedSg sg, DmaDirection dir) {
        MapType type = e.vramMappings.remove(sg);
        DmaApi dma = a.device().dma();
        if (type == null) {
            dma.unmapSg(sg, dir);
            return;
        }
        DmaSegment s = sg.segments().getFirst();
        if (type == MapType.BUS_ADDR) {
            dma.unmapPeer(s.dmaAddress(), s.length(), dir);
        } else {
            dma.unmapResource(s.dmaAddress(), s.length(), dir);
        }
    }

    /**
     * The physical address list (beyond today's kernel, where only vfio-pci gives one to iommufd): the buffer's VRAM
     * range of the BAR while it is in VRAM. A move or a revoke tells the importer first ({@code move_notify} means
     * revoke for it), so it never keeps an IOMMU mapping of VRAM handed out again. {@code EOPNOTSUPP} while the buffer
     * is in system memory: a VRAM object's pages there are the memory manager's to move at will.
     */
    private List<PhysVec> phys(Exported e, Attachment a) {
        DmaBuf buf = e.dmabuf;
        Location l = e.location();
        ErrnoException.check(l != null, Errno.ENODEV, name + ": dma-buf " + buf.ino() + " has no backing");
        if (!(l instanceof InVram v)) {
            throw new ErrnoException(Errno.EOPNOTSUPP, name + ": dma-buf " + buf.ino() + " is in " + l.describe()
                    + "; physical ranges are given for VRAM only");
        }
        tracer.emit(TraceKind.DMA_BUF, a.device().name(), v.busAddress(), v.size(), name + ": dma-buf " + buf.ino()
                + " hands its VRAM range " + v.describe() + " to an IOMMU importer");
        return List.of(new PhysVec(v.busAddress(), v.size()));
    }

    /** Retiring a mapping: the importer's device loses access, its bus addresses stay its own until it unmaps. */
    private void cutAccess(Exported e, Attachment a, MappedSg sg, DmaDirection dir, String why) {
        MapType type = e.vramMappings.get(sg);
        DmaApi dma = a.device().dma();
        if (type == null) {
            dma.revokeSg(sg, dir, why);
            return;
        }
        DmaSegment s = sg.segments().getFirst();
        if (type == MapType.BUS_ADDR) {
            dma.revokePeer(s.dmaAddress(), s.length(), dir, why);
        } else {
            dma.revokeResource(s.dmaAddress(), s.length(), dir, why);
        }
    }

    /**
     * {@code amdgpu_dma_buf_pin}: a pinned buffer cannot move, so it is pinned in VRAM only while every attachment
     * reaches VRAM; otherwise it goes to system memory first (per the policy).
     */
    private void pin(Exported e, Attachment a) {
        if (e.location() instanceof InVram) {
            for (Attachment other : e.dmabuf.attachments()) {
                if (!other.peer2peer()) {
                    leaveVram(e, other, "pin by " + a.device().name(), noP2p(other));
                    break;
                }
            }
        }
        ExportBacking b = e.backing;
        ErrnoException.check(b != null, Errno.ENODEV, name + ": dma-buf " + e.dmabuf.ino() + " has no backing");
        b.pin();
        synchronized (e) {
            e.pins++;
        }
    }

    /**
     * The policy for an attachment that cannot reach the buffer in VRAM: refuse, or migrate to system memory and
     * return the new location. Reservation lock held.
     */
    private Location leaveVram(Exported e, Attachment a, String what, String why) {
        DmaBuf buf = e.dmabuf;
        if (policy == Policy.REFUSE) {
            throw refusal(buf, a, what, why);
        }
        tracer.emit(TraceKind.DMA_BUF, a.device().name(), -1, buf.size(), name + ": " + a.device().name()
                + " cannot reach dma-buf " + buf.ino() + " in VRAM (" + why + "); policy MIGRATE_TO_HOST moves it to"
                + " system memory for " + what);
        migrate(buf, Target.HOST, what + ": " + a.device().name() + " without peer-to-peer");
        return e.location();
    }

    /**
     * The REFUSE policy's errno: {@code EOPNOTSUPP} when the importer does not take peer-to-peer addresses at all,
     * {@code EBUSY} when it would but p2pdma keeps it out. Traced.
     */
    private ErrnoException refusal(DmaBuf buf, Attachment a, String what, String why) {
        boolean importerWants = a.importer().map(Importer::allowPeer2Peer).orElse(false);
        Errno errno = importerWants ? Errno.EBUSY : Errno.EOPNOTSUPP;
        tracer.emit(TraceKind.DMA_BUF, a.device().name(), -1, buf.size(), name + " refuses " + what + " of dma-buf "
                + buf.ino() + " in VRAM: " + why + "; policy REFUSE (" + errno + ")");
        return new ErrnoException(errno, name + ": " + a.device().name() + " cannot reach dma-buf " + buf.ino()
                + " in VRAM (" + why + ") and the policy is to refuse the " + what);
    }

    /** Why an attachment has no peer-to-peer, as its attach found. */
    private static String noP2p(Attachment a) {
        return a.exporterPriv() instanceof String why ? why : "no peer-to-peer";
    }

    private void cpu(Exported e, long off, MemorySegment data, boolean write) {
        DmaBuf buf = e.dmabuf;
        ErrnoException.check(buf.resv().await(ResvUsage.KERNEL, registry.fenceTimeout()), Errno.ETIMEDOUT,
                name + ": the move of dma-buf " + buf.ino() + " did not finish in time");
        ExportBacking b = e.backing;
        ErrnoException.check(b != null && b.location() != null, Errno.ENODEV, name + ": dma-buf " + buf.ino() + " has no backing");
        if (write) {
            b.write(off, data);
        } else {
            b.read(off, data);
        }
    }

    private Exported exported(DmaBuf buf) {
        ErrnoException.check(buf != null && buf.priv() instanceof Exported e && e.owner() == this, Errno.EINVAL,
                name + ": " + buf + " is not one of this exporter's buffers");
        return (Exported) buf.priv();
    }

    /** One exported buffer: its backing until released, the exporter's pins, and the VRAM mappings handed out. */
    private final class Exported {
        volatile ExportBacking backing;
        DmaBuf dmabuf;
        int pins;
        /**
         * The VRAM mappings handed out (a host mapping is not in here), by identity; a leaf lock of its own, since
         * unmap runs under the core's mapping lock and retiring under the backing's own lock.
         */
        final Map<MappedSg, MapType> vramMappings = Collections.synchronizedMap(new IdentityHashMap<>());

        Exported(ExportBacking backing) {
            this.backing = backing;
        }

        Location location() {
            ExportBacking b = backing;
            return b == null ? null : b.location();
        }

        /** Releases the backing once (revoke or the dma-buf's release, whichever comes first). */
        void release() {
            ExportBacking b;
            synchronized (this) {
                b = backing;
                backing = null;
            }
            if (b != null) {
                b.release();
            }
        }

        P2pExporter owner() {
            return P2pExporter.this;
        }
    }
}
