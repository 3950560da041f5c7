package dev.dmaplane.dma.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDebugReport.Kind;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dma.DmaTraffic;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.dma.PeerRouter;
import dev.dmaplane.dma.SgEntry;
import dev.dmaplane.dma.SgTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mem.PhysicalRegion;
import dev.dmaplane.trace.TraceKind;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.function.Supplier;

/**
 * The DMA API of one device as {@code kernel/dma/mapping.c} is its front end: the argument checks, the dispatch to
 * {@link IommuDma} when its group's default domain translates or to {@link DirectDma} (with {@link Swiotlb}
 * bouncing beyond the mask) otherwise, and the trace events. {@link DebugEntries} tracks every live mapping, so
 * misuse is refused with {@code EINVAL} and reported, and what a driver leaks is found at unbind.
 */
final class DeviceDma implements DmaApi {
    private static final long PAGE = HostMemory.PAGE_SIZE;

    final Device device;
    final DmaSubsystem sys;
    final IommuGroup group;
    final DebugEntries entries;
    private final IommuDma iommu;
    private final DirectDma direct;
    private final DeviceBusMaster busMaster;
    /** The traffic the device's bus master put on the bus. */
    final TrafficCounters traffic;
    private volatile long mask = 0xFFFF_FFFFL;
    private volatile long maxSegment = 64 * 1024;
    private volatile long segmentBoundary = -1L;

    DeviceDma(Device device, DmaSubsystem sys) {
        this.device = device;
        this.sys = sys;
        this.group = sys.iommu.enabled() ? sys.iommu.groupOf(device).orElse(null) : null;
        this.entries = new DebugEntries(device.name(), sys.debug);
        this.iommu = new IommuDma(this);
        this.direct = new DirectDma(this);
        this.traffic = new TrafficCounters();
        this.busMaster = new DeviceBusMaster(this);
    }

    @Override
    public String deviceName() {
        return device.name();
    }

    @Override
    public long dmaMask() {
        return mask;
    }

    @Override
    public void setDmaMask(long newMask) {
        if (newMask == 0 || (newMask & (newMask + 1)) != 0) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": DMA mask 0x" + Long.toHexString(newMask) + " is not of the form 2^n-1");
        }
        if (newMask != -1L && newMask < 0xFFFF_FFFFL) {
            throw new ErrnoException(Errno.EIO, device.name() + ": DMA mask 0x" + Long.toHexString(newMask) + " is narrower than 32 bits");
        }
        this.mask = newMask;
    }

    @Override
    public long maxSegmentSize() {
        return maxSegment;
    }

    @Override
    public void setMaxSegmentSize(long size) {
        if (size < PAGE || size > Integer.MAX_VALUE) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": max segment size " + size + " must be 4096.." + Integer.MAX_VALUE);
        }
        this.maxSegment = size;
    }

    @Override
    public long segmentBoundary() {
        return segmentBoundary;
    }

    @Override
    public void setSegmentBoundary(long mask) {
        if (mask != -1L && (mask < PAGE - 1 || Long.bitCount(mask + 1) != 1)) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": segment boundary mask 0x" + Long.toHexString(mask)
                    + " must be 2^n - 1 of at least 0xfff, or all ones");
        }
        this.segmentBoundary = mask;
    }

    @Override
    public BusMaster busMaster() {
        return busMaster;
    }

    @Override
    public DmaTraffic traffic() {
        return traffic.snapshot();
    }

    @Override
    public long mapSingle(long physAddr, long size, DmaDirection direction) {
        checkMap(direction, size);
        checkRam(physAddr, size);
        Mapping m = mapContiguous(Mapping.Type.SINGLE, physAddr, size, direction);
        entries.register(m);
        trace(TraceKind.MAP, m, () -> "single " + direction + " phys 0x" + Long.toHexString(physAddr));
        return m.dmaAddr();
    }

    @Override
    public void unmapSingle(long dmaAddress, long size, DmaDirection direction) {
        Mapping m = entries.find(dmaAddress, Mapping.Type.SINGLE, "dma_unmap_single", size, direction, null);
        entries.unregister(m);
        teardown(m, true);
        trace(TraceKind.UNMAP, m, () -> "single " + direction);
    }

    /** Maps one physically contiguous range through the back end the device's domain calls for. */
    private Mapping mapContiguous(Mapping.Type type, long physAddr, long size, DmaDirection direction) {
        Throwable site = sys.debug.captureSite();
        IommuDomain domain = mappingDomain();
        return domain != null ? iommu.map(domain, type, physAddr, size, direction, site) : direct.map(type, physAddr, size, direction, site);
    }

    @Override
    public MappedSg mapSg(SgTable table, DmaDirection direction) {
        if (table == null) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": dma_map_sg of a null table");
        }
        checkMap(direction, table.length());
        for (SgEntry e : table.entries()) {
            checkRam(e.physAddr(), e.length());
        }
        Throwable site = sys.debug.captureSite();
        IommuDomain domain = mappingDomain();
        long max = maxSegment;
        long boundary = segmentBoundary;
        Mapping m = domain != null ? iommu.mapSg(domain, table, direction, max, boundary, site)
                : direct.mapSg(table, direction, max, boundary, site);
        entries.register(m);
        for (DmaSegment seg : m.sg().segments()) {
            entries.checkSgSegment(seg, max, boundary, site);
        }
        trace(TraceKind.MAP, m, () -> "sg " + table.entries().size() + " entries -> " + m.sg().segments().size() + " segments " + direction);
        return m.sg();
    }

    @Override
    public void unmapSg(MappedSg mapped, DmaDirection direction) {
        if (mapped == null) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": dma_unmap_sg of a null table");
        }
        Mapping m = entries.find(mapped.segments().getFirst().dmaAddress(), Mapping.Type.SG, "dma_unmap_sg", mapped.length(), direction, mapped);
        entries.unregister(m);
        teardown(m, true);
        trace(TraceKind.UNMAP, m, () -> "sg " + direction);
    }

    @Override
    public void revokeSg(MappedSg mapped, DmaDirection direction, String reason) {
        if (mapped == null) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": revoke of a null table");
        }
        revoke(entries.find(mapped.segments().getFirst().dmaAddress(), Mapping.Type.SG, "revoke of dma_map_sg mapping",
                mapped.length(), direction, mapped), reason);
    }

    @Override
    public void revokeResource(long dmaAddress, long size, DmaDirection direction, String reason) {
        revoke(entries.find(dmaAddress, Mapping.Type.RESOURCE, "revoke of dma_map_resource mapping", size, direction, null), reason);
    }

    @Override
    public void revokePeer(long busAddr, long size, DmaDirection direction, String reason) {
        revoke(entries.find(busAddr, Mapping.Type.PEER, "revoke of peer bus-address window", size, direction, null), reason);
    }

    /**
     * Cuts the device off a live mapping but keeps its bus addresses and bookkeeping until the owner unmaps: the
     * IOMMU translations go, in pass-through the dma-debug window closes, a peer window is marked for dma-debug's
     * peer check.
     */
    private void revoke(Mapping m, String reason) {
        String why = reason == null || reason.isBlank() ? "access revoked" : reason;
        entries.revoke(m, why);
        if (m.translated()) {
            iommu.revoke(m);
        } else {
            entries.dropRanges(m);
        }
        trace(TraceKind.UNMAP, m, () -> m.type().apiName() + " revoked, bus addresses kept until unmap: " + why);
    }

    @Override
    public long mapResource(long physAddr, long size, DmaDirection direction) {
        checkMap(direction, size);
        checkResource(physAddr, size);
        Mapping m = mapContiguous(Mapping.Type.RESOURCE, physAddr, size, direction);
        entries.register(m);
        trace(TraceKind.MAP, m, () -> "resource " + direction + " phys 0x" + Long.toHexString(physAddr));
        return m.dmaAddr();
    }

    @Override
    public void unmapResource(long dmaAddress, long size, DmaDirection direction) {
        Mapping m = entries.find(dmaAddress, Mapping.Type.RESOURCE, "dma_unmap_resource", size, direction, null);
        entries.unregister(m);
        teardown(m, false);
        trace(TraceKind.UNMAP, m, () -> "resource " + direction);
    }

    @Override
    public long mapPeer(long busAddr, long size, DmaDirection direction) {
        checkMap(direction, size);
        requirePresent();
        checkResource(busAddr, size);
        PeerRouter.Route first = sys.peerRouter.route(device, busAddr);
        PeerRouter.Route last = sys.peerRouter.route(device, busAddr + size - 1);
        if (!(first instanceof PeerRouter.ToPeer a) || !(last instanceof PeerRouter.ToPeer b) || a.region() != b.region()) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": the fabric does not route 0x" + Long.toHexString(busAddr)
                    + "+" + size + " from this device to one peer (" + describe(first) + "); a peer across the root"
                    + " complex is reached through the IOMMU with dma_map_resource");
        }
        Throwable site = sys.debug.captureSite();
        Mapping m = Mapping.direct(Mapping.Type.PEER, busAddr, size, direction, site);
        entries.register(m);
        trace(TraceKind.MAP, m, () -> "peer bus address " + direction + " in " + a.region().name() + ", no IOMMU");
        return busAddr;
    }

    @Override
    public void unmapPeer(long busAddr, long size, DmaDirection direction) {
        Mapping m = entries.find(busAddr, Mapping.Type.PEER, "unmap of peer bus-address window", size, direction, null);
        entries.unregister(m);
        teardown(m, false);
        trace(TraceKind.UNMAP, m, () -> "peer bus address " + direction);
    }

    private static String describe(PeerRouter.Route r) {
        return switch (r) {
            case PeerRouter.Upstream u -> "it goes up to the root complex";
            case PeerRouter.Refused f -> f.reason();
            case PeerRouter.ToPeer p -> "it spans more than " + p.region().name();
        };
    }

    /** {@code dma_map_resource} takes device memory only: no RAM, and a device region must decode all of it. */
    private void checkResource(long physAddr, long size) {
        HostMemory ram = sys.physical.ram();
        if (ram.contains(physAddr, 1)) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": dma_map_resource of 0x" + Long.toHexString(physAddr)
                    + ", which is host RAM; map RAM with dma_map_single/dma_map_sg");
        }
        PhysicalRegion r = sys.physical.regionAt(physAddr);
        if (r == null || Long.compareUnsigned(size, r.base() + r.size() - physAddr) > 0) {
            throw new ErrnoException(Errno.EFAULT, device.name() + ": no device memory decodes 0x" + Long.toHexString(physAddr)
                    + "+" + size);
        }
    }

    @Override
    public void syncSingleForCpu(long dmaAddress, long size, DmaDirection direction) {
        sync(dmaAddress, size, direction, true, "dma_sync_single_for_cpu");
    }

    @Override
    public void syncSingleForDevice(long dmaAddress, long size, DmaDirection direction) {
        sync(dmaAddress, size, direction, false, "dma_sync_single_for_device");
    }

    @Override
    public void syncSgForCpu(MappedSg mapped, DmaDirection direction) {
        syncSg(mapped, direction, true, "dma_sync_sg_for_cpu");
    }

    @Override
    public void syncSgForDevice(MappedSg mapped, DmaDirection direction) {
        syncSg(mapped, direction, false, "dma_sync_sg_for_device");
    }

    private void syncSg(MappedSg mapped, DmaDirection direction, boolean toCpu, String api) {
        if (mapped == null) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": " + api + " of a null table");
        }
        Mapping m = entries.find(mapped.segments().getFirst().dmaAddress(), Mapping.Type.SG, api, mapped.length(), null, mapped);
        checkSyncDirection(m, direction, toCpu, api);
        direct.syncAll(m, toCpu);
    }

    private void sync(long dmaAddress, long size, DmaDirection direction, boolean toCpu, String api) {
        if (size <= 0) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": " + api + " of size " + size);
        }
        Mapping m = entries.containing(dmaAddress, size);
        if (m == null) {
            throw entries.reportAndFail(Kind.UNKNOWN_ADDRESS, dmaAddress, size, api + " of 0x" + Long.toHexString(dmaAddress)
                    + "+" + size + ", which the device has not mapped", null);
        }
        if (m.type() == Mapping.Type.COHERENT) {
            throw entries.reportAndFail(Kind.TYPE_MISMATCH, dmaAddress, size, api + " of coherent memory at 0x"
                    + Long.toHexString(dmaAddress) + " (made by " + m.type().apiName() + ")", m.site());
        }
        checkSyncDirection(m, direction, toCpu, api);
        direct.syncRange(m, dmaAddress, size, toCpu);
    }

    /**
     * {@code check_sync} in {@code kernel/dma/debug.c}: a mapping made {@code DMA_BIDIRECTIONAL} may be synced in either
     * direction; any other must be synced with its own direction, and never for the side that does not write it.
     */
    private void checkSyncDirection(Mapping m, DmaDirection direction, boolean toCpu, String api) {
        entries.requireKnownDirection(direction, api);
        if (m.direction() == DmaDirection.BIDIRECTIONAL) {
            return;
        }
        if (direction != m.direction()) {
            throw entries.reportAndFail(Kind.DIRECTION_MISMATCH, m.dmaAddr(), m.size(), api + " with direction " + direction
                    + " of memory mapped " + m.direction(), m.site());
        }
        if (toCpu && direction == DmaDirection.TO_DEVICE) {
            throw entries.reportAndFail(Kind.BAD_DIRECTION, m.dmaAddr(), m.size(), api + ": syncs device read-only (TO_DEVICE) memory for the cpu", m.site());
        }
        if (!toCpu && direction == DmaDirection.FROM_DEVICE) {
            throw entries.reportAndFail(Kind.BAD_DIRECTION, m.dmaAddr(), m.size(), api + ": syncs device write-only (FROM_DEVICE) memory to the device", m.site());
        }
    }

    @Override
    public CoherentBuffer allocCoherent(long size) {
        if (size <= 0 || size > HostMemory.HUGE_PAGE_SIZE) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": dma_alloc_coherent size " + size + " must be 1.." + HostMemory.HUGE_PAGE_SIZE);
        }
        requirePresent();
        Throwable site = sys.debug.captureSite();
        HostMemory ram = sys.physical.ram();
        long len = IommuDma.align(size);
        int order = 64 - Long.numberOfLeadingZeros((len >>> HostMemory.PAGE_SHIFT) - 1);
        IommuDomain domain = mappingDomain();
        long pfn = ram.allocPages(order);
        long phys = pfn << HostMemory.PAGE_SHIFT;
        long iova = -1;
        Arena arena = null;
        try {
            long dma;
            if (domain != null) {
                iova = iommu.mapCoherent(domain, phys, len);
                dma = iova;
            } else {
                dma = direct.coherentAddress(phys, len);
            }
            arena = Arena.ofShared();
            MemorySegment cpu = ram.slice(phys, size).reinterpret(size, arena, null);
            CoherentBuffer cb = new CoherentBuffer(dma, size, cpu, phys);
            Mapping m = Mapping.coherent(cb, domain, iova, len, arena, pfn, site);
            entries.register(m);
            trace(TraceKind.MAP, m, () -> "coherent phys 0x" + Long.toHexString(phys));
            return cb;
        } catch (RuntimeException e) {
            if (iova >= 0) {
                iommu.unmapRange(domain, iova, len);
            }
            if (arena != null) {
                arena.close();
            }
            ram.putPage(pfn);
            throw e;
        }
    }

    @Override
    public void freeCoherent(CoherentBuffer buffer) {
        if (buffer == null) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": dma_free_coherent of null");
        }
        Mapping m = entries.find(buffer.dmaAddress(), Mapping.Type.COHERENT, "dma_free_coherent", buffer.size(), DmaDirection.BIDIRECTIONAL, null);
        if (m.coherent() != buffer && !m.coherent().equals(buffer)) {
            throw entries.reportAndFail(Kind.UNKNOWN_ADDRESS, buffer.dmaAddress(), buffer.size(), "dma_free_coherent of a buffer the device did not allocate at 0x"
                    + Long.toHexString(buffer.dmaAddress()), m.site());
        }
        entries.unregister(m);
        teardown(m, true);
        trace(TraceKind.UNMAP, m, () -> "coherent");
    }

    int liveCount() {
        return entries.liveCount();
    }

    /** Reports and undoes every live mapping; returns how many there were. */
    int reclaimLeaks() {
        List<Mapping> all = entries.all();
        for (Mapping m : all) {
            entries.reportLeak(m);
            entries.unregister(m);
            teardown(m, false);
            trace(TraceKind.UNMAP, m, () -> "reclaimed leak");
        }
        return all.size();
    }

    /** Undoes a mapping in its back end; a revoked one copies nothing back, its device access being gone. */
    private void teardown(Mapping m, boolean copyBack) {
        boolean wasRevoked = entries.forgetRevoked(m);
        if (m.translated()) {
            iommu.unmap(m, wasRevoked);
        }
        direct.unmap(m, copyBack && !wasRevoked);
        if (m.type() == Mapping.Type.COHERENT) {
            m.arena().close();
            sys.physical.ram().putPage(m.pfn());
        }
    }

    /** The translating domain the DMA API maps into, or null for pass-through. */
    private IommuDomain mappingDomain() {
        requirePresent();
        if (group == null) {
            return null;
        }
        if (group.owner() != null) {
            throw new ErrnoException(Errno.EBUSY, device.name() + ": IOMMU group " + group.id() + " is owned by " + group.owner()
                    + "; the DMA API cannot map for it");
        }
        IommuDomain d = group.defaultDomain();
        return d.type() == IommuDomainType.DMA ? d : null;
    }

    private void checkMap(DmaDirection direction, long size) {
        if (direction == null || direction == DmaDirection.NONE) {
            throw entries.reportAndFail(Kind.BAD_DIRECTION, -1, size, "mapping with direction " + direction, null);
        }
        if (size <= 0) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": DMA mapping of size " + size);
        }
    }

    private void checkRam(long physAddr, long size) {
        if (!sys.physical.ram().contains(physAddr, size)) {
            throw new ErrnoException(Errno.EFAULT, device.name() + ": 0x" + Long.toHexString(physAddr) + "+" + size + " is not host RAM");
        }
    }

    void requirePresent() {
        if (!device.isPresent()) {
            throw new ErrnoException(Errno.ENODEV, device.name() + " has left its bus");
        }
    }

    /** Emits a trace event; the detail text is built only while tracing is on (map/unmap is a hot path). */
    private void trace(TraceKind kind, Mapping m, Supplier<String> detail) {
        if (sys.tracer.isEnabled()) {
            sys.tracer.emit(kind, device.name(), m.dmaAddr(), m.size(), detail.get());
        }
    }
}
