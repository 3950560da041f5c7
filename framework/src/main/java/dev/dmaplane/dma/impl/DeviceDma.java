package dev.dmaplane.dma.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.dma.CoherentBuffer;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDebugReport.Kind;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.dma.PeerRouter;
import dev.dmaplane.dma.SgEntry;
import dev.dmaplane.dma.SgTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IoPageTable;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mem.PhysicalRegion;
import dev.dmaplane.trace.TraceKind;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.function.Supplier;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * The DMA API of one device: {@code dma-iommu} when its group's default domain translates, {@code dma-direct}
 * (with swiotlb bouncing beyond the mask) otherwise. Every live mapping is tracked, so misuse is refused with
 * {@code EINVAL} and reported, and what a driver leaks is found at unbind.
 * <p>Size: close to 900 lines, the front end, the IOMMU and direct/swiotlb back ends and dma-debug's bookkeeping in
 * one class; issue 11 splits it as {@code kernel/dma} is cut ({@code mapping.c}, {@code dma-iommu.c},
 * {@code direct.c}, {@code swiotlb.c}, {@code debug.c}).
 */
final class DeviceDma implements DmaApi {
    private static final long PAGE = HostMemory.PAGE_SIZE;
    private static final long PAGE_MASK = PAGE - 1;
    private static final int RECENT_UNMAPS = 256;
    private static final long DAC_BOUNDARY = 1L << 32;

    final Device device;
    final DmaSubsystem sys;
    final IommuGroup group;
    private final DeviceBusMaster busMaster;
    private volatile long mask = 0xFFFF_FFFFL;
    private volatile long maxSegment = 64 * 1024;
    /** Live mappings by the bus address of their first byte; a list because pass-through may map a buffer twice. */
    private final ConcurrentHashMap<Long, List<Mapping>> live = new ConcurrentHashMap<>();
    /** Pass-through ranges a device may touch, kept while dma-debug is on: segment start -> mapping. */
    final ConcurrentSkipListMap<Long, Range> debugRanges = new ConcurrentSkipListMap<>();
    private final Map<Long, Long> recentlyUnmapped = new LinkedHashMap<>(64, 0.75f, false) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<Long, Long> eldest) {
            return size() > RECENT_UNMAPS;
        }
    };

    /** Live mappings whose device access was revoked ({@link #revokeSg}), with the reason; guarded by itself. */
    private final Map<Mapping, String> revoked = Collections.synchronizedMap(new IdentityHashMap<>());

    /** Live peer bus-address windows ({@link #mapPeer}), revoked ones included until unmapped; few per device. */
    private final List<Mapping> peerWindows = new CopyOnWriteArrayList<>();
    /** Peer windows unmapped while dma-debug was on, newest last, for the report of a late access; guarded by itself. */
    private final ArrayDeque<Mapping> endedPeerWindows = new ArrayDeque<>();

    /** One device-visible range of a pass-through mapping, for dma-debug's access check. */
    record Range(long start, long length, DmaDirection direction, Mapping mapping) {
    }

    DeviceDma(Device device, DmaSubsystem sys) {
        this.device = device;
        this.sys = sys;
        this.group = sys.iommu.enabled() ? sys.iommu.groupOf(device).orElse(null) : null;
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
    public BusMaster busMaster() {
        return busMaster;
    }

    @Override
    public long mapSingle(long physAddr, long size, DmaDirection direction) {
        checkMap(direction, size);
        checkRam(physAddr, size);
        Mapping m = mapContiguous(Mapping.Type.SINGLE, physAddr, size, direction);
        register(m);
        trace(TraceKind.MAP, m, () -> "single " + direction + " phys 0x" + Long.toHexString(physAddr));
        return m.dmaAddr();
    }

    @Override
    public void unmapSingle(long dmaAddress, long size, DmaDirection direction) {
        Mapping m = find(dmaAddress, Mapping.Type.SINGLE, "dma_unmap_single", size, direction, null);
        unregister(m);
        teardown(m, true);
        trace(TraceKind.UNMAP, m, () -> "single " + direction);
    }

    /**
     * Maps one physically contiguous range: an IOVA range in a translating domain, else the physical address when
     * the mask reaches it, else a swiotlb bounce for RAM ({@code SINGLE}); device memory ({@code RESOURCE}) is never
     * bounced.
     */
    private Mapping mapContiguous(Mapping.Type type, long physAddr, long size, DmaDirection direction) {
        Throwable site = sys.debug.captureSite();
        IommuDomain domain = mappingDomain();
        if (domain != null) {
            long off = physAddr & PAGE_MASK;
            long len = align(off + size);
            long iova = allocIova(domain, len);
            try {
                domain.pageTable().map(iova, physAddr - off, len, prot(direction));
            } catch (RuntimeException e) {
                domain.iovaAllocator().free(iova, len);
                throw e;
            }
            return new Mapping(type, iova + off, size, direction, domain, iova, len, null, List.of(), null, null, -1, site);
        }
        if (fitsMask(physAddr, size, mask)) {
            return new Mapping(type, physAddr, size, direction, null, -1, 0, null, List.of(), null, null, -1, site);
        }
        if (type == Mapping.Type.RESOURCE) {
            throw new ErrnoException(Errno.EIO, device.name() + ": resource 0x" + Long.toHexString(physAddr) + "+" + size
                    + " is beyond DMA mask 0x" + Long.toHexString(mask) + ", and resources are never bounced");
        }
        Swiotlb.Bounce b = bounce(physAddr, size);
        return new Mapping(type, b.tlbAddr(), size, direction, null, -1, 0, null, List.of(b), null, null, -1, site);
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
        Mapping m = domain != null ? mapSgTranslated(domain, table, direction, site) : mapSgDirect(table, direction, site);
        register(m);
        trace(TraceKind.MAP, m, () -> "sg " + table.entries().size() + " entries -> " + m.sg().segments().size() + " segments " + direction);
        return m.sg();
    }

    private Mapping mapSgTranslated(IommuDomain domain, SgTable table, DmaDirection direction, Throwable site) {
        long total = 0;
        for (SgEntry e : table.entries()) {
            total += align((e.physAddr() & PAGE_MASK) + e.length());
        }
        long iova = allocIova(domain, total);
        IoPageTable pt = domain.pageTable();
        long cursor = iova;
        List<DmaSegment> segs = new ArrayList<>();
        int prot = prot(direction);
        try {
            long segStart = -1;
            long segLen = 0;
            for (SgEntry e : table.entries()) {
                long off = e.physAddr() & PAGE_MASK;
                long len = align(off + e.length());
                pt.map(cursor, e.physAddr() - off, len, prot);
                long dma = cursor + off;
                boolean joins = segStart >= 0 && off == 0 && ((segStart + segLen) & PAGE_MASK) == 0
                        && segStart + segLen == dma && segLen + e.length() <= maxSegment;
                if (joins) {
                    segLen += e.length();
                } else {
                    if (segStart >= 0) {
                        segs.add(new DmaSegment(segStart, segLen));
                    }
                    segStart = dma;
                    segLen = e.length();
                }
                cursor += len;
            }
            segs.add(new DmaSegment(segStart, segLen));
        } catch (RuntimeException ex) {
            if (cursor > iova) {
                pt.unmap(iova, cursor - iova);
            }
            domain.iovaAllocator().free(iova, total);
            throw ex;
        }
        MappedSg sg = new MappedSg(table, direction, segs);
        return new Mapping(Mapping.Type.SG, segs.getFirst().dmaAddress(), table.length(), direction, domain, iova, total,
                sg, List.of(), null, null, -1, site);
    }

    private Mapping mapSgDirect(SgTable table, DmaDirection direction, Throwable site) {
        List<Swiotlb.Bounce> bounces = new ArrayList<>();
        List<DmaSegment> segs = new ArrayList<>();
        try {
            long segStart = -1;
            long segLen = 0;
            for (SgEntry e : table.entries()) {
                long dma;
                if (fitsMask(e.physAddr(), e.length(), mask)) {
                    dma = e.physAddr();
                } else {
                    Swiotlb.Bounce b = bounce(e.physAddr(), e.length());
                    bounces.add(b);
                    dma = b.tlbAddr();
                }
                if (segStart >= 0 && segStart + segLen == dma && segLen + e.length() <= maxSegment) {
                    segLen += e.length();
                } else {
                    if (segStart >= 0) {
                        segs.add(new DmaSegment(segStart, segLen));
                    }
                    segStart = dma;
                    segLen = e.length();
                }
            }
            segs.add(new DmaSegment(segStart, segLen));
        } catch (RuntimeException ex) {
            for (Swiotlb.Bounce b : bounces) {
                sys.swiotlb.unmap(b);
            }
            throw ex;
        }
        MappedSg sg = new MappedSg(table, direction, segs);
        return new Mapping(Mapping.Type.SG, segs.getFirst().dmaAddress(), table.length(), direction, null, -1, 0, sg,
                List.copyOf(bounces), null, null, -1, site);
    }

    @Override
    public void unmapSg(MappedSg mapped, DmaDirection direction) {
        if (mapped == null) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": dma_unmap_sg of a null table");
        }
        Mapping m = find(mapped.segments().getFirst().dmaAddress(), Mapping.Type.SG, "dma_unmap_sg", mapped.length(), direction, mapped);
        unregister(m);
        teardown(m, true);
        trace(TraceKind.UNMAP, m, () -> "sg " + direction);
    }

    @Override
    public void revokeSg(MappedSg mapped, DmaDirection direction, String reason) {
        if (mapped == null) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": revoke of a null table");
        }
        revoke(find(mapped.segments().getFirst().dmaAddress(), Mapping.Type.SG, "revoke of dma_map_sg mapping",
                mapped.length(), direction, mapped), reason);
    }

    @Override
    public void revokeResource(long dmaAddress, long size, DmaDirection direction, String reason) {
        revoke(find(dmaAddress, Mapping.Type.RESOURCE, "revoke of dma_map_resource mapping", size, direction, null), reason);
    }

    @Override
    public void revokePeer(long busAddr, long size, DmaDirection direction, String reason) {
        revoke(find(busAddr, Mapping.Type.PEER, "revoke of peer bus-address window", size, direction, null), reason);
    }

    /**
     * Cuts the device off a live mapping but keeps its bus addresses and bookkeeping until the owner unmaps: the
     * IOMMU translations go, in pass-through the dma-debug window closes, a peer window is marked for dma-debug's
     * peer check.
     */
    private void revoke(Mapping m, String reason) {
        String why = reason == null || reason.isBlank() ? "access revoked" : reason;
        if (revoked.putIfAbsent(m, why) != null) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": " + m.type().apiName() + " mapping at 0x"
                    + Long.toHexString(m.dmaAddr()) + " was already revoked (" + revoked.get(m) + ")");
        }
        if (m.translated()) {
            m.domain().pageTable().unmap(m.iova(), m.iovaLength());
        } else if (m.sg() != null) {
            for (DmaSegment s : m.sg().segments()) {
                dropRange(s.dmaAddress(), m);
            }
        } else {
            dropRange(m.dmaAddr(), m);
        }
        trace(TraceKind.UNMAP, m, () -> m.type().apiName() + " revoked, bus addresses kept until unmap: " + why);
    }

    /** The revoked mapping covering {@code [addr, addr+len)} and why it was revoked, or null. */
    Map.Entry<Mapping, String> revokedAt(long addr, long len) {
        synchronized (revoked) {
            for (Map.Entry<Mapping, String> e : revoked.entrySet()) {
                if (covers(e.getKey(), addr, len) || covers(e.getKey(), addr, 1)) {
                    return Map.entry(e.getKey(), e.getValue());
                }
            }
        }
        return null;
    }

    // resources: device memory of a peer

    @Override
    public long mapResource(long physAddr, long size, DmaDirection direction) {
        checkMap(direction, size);
        checkResource(physAddr, size);
        Mapping m = mapContiguous(Mapping.Type.RESOURCE, physAddr, size, direction);
        register(m);
        trace(TraceKind.MAP, m, () -> "resource " + direction + " phys 0x" + Long.toHexString(physAddr));
        return m.dmaAddr();
    }

    @Override
    public void unmapResource(long dmaAddress, long size, DmaDirection direction) {
        Mapping m = find(dmaAddress, Mapping.Type.RESOURCE, "dma_unmap_resource", size, direction, null);
        unregister(m);
        teardown(m, false);
        trace(TraceKind.UNMAP, m, () -> "resource " + direction);
    }

    // peer bus addresses, no IOMMU

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
        Mapping m = new Mapping(Mapping.Type.PEER, busAddr, size, direction, null, -1, 0, null, List.of(), null, null, -1, site);
        register(m);
        trace(TraceKind.MAP, m, () -> "peer bus address " + direction + " in " + a.region().name() + ", no IOMMU");
        return busAddr;
    }

    @Override
    public void unmapPeer(long busAddr, long size, DmaDirection direction) {
        Mapping m = find(busAddr, Mapping.Type.PEER, "unmap of peer bus-address window", size, direction, null);
        unregister(m);
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

    /**
     * dma-debug's verdict on a request the fabric routes to a peer at {@code [addr, addr+len)}: null when the device
     * may make it (a live window it was handed covers it and permits it, or no window it was ever handed touches it),
     * else the finding and the window concerned.
     */
    PeerFinding checkPeerAccess(long addr, long len, boolean write) {
        if (peerWindows.isEmpty() && endedPeerWindows.isEmpty()) {
            return null;
        }
        Mapping readOnly = null;
        Mapping partial = null;
        for (Mapping m : peerWindows) {
            if (!overlaps(m, addr, len) || revoked.containsKey(m)) {
                continue;
            }
            if (!covers(m, addr, len)) {
                partial = m;
            } else if (write && m.direction() == DmaDirection.TO_DEVICE) {
                readOnly = m;
            } else {
                return null;
            }
        }
        for (Mapping m : peerWindows) {
            String why = revoked.get(m);
            if (why != null && overlaps(m, addr, len)) {
                return new PeerFinding(Kind.ACCESS_REVOKED, m, "a peer bus-address window whose access was revoked: " + why);
            }
        }
        if (readOnly != null) {
            return new PeerFinding(Kind.ACCESS_READ_ONLY, readOnly, "a peer bus-address window mapped TO_DEVICE");
        }
        if (partial != null) {
            return new PeerFinding(Kind.ACCESS_UNMAPPED, partial, "beyond the end of the peer bus-address window at 0x"
                    + Long.toHexString(partial.dmaAddr()) + "+" + partial.size());
        }
        synchronized (endedPeerWindows) {
            for (Iterator<Mapping> it = endedPeerWindows.descendingIterator(); it.hasNext(); ) {
                Mapping m = it.next();
                if (overlaps(m, addr, len)) {
                    return new PeerFinding(Kind.ACCESS_UNMAPPED, m, "a peer bus-address window that was unmapped");
                }
            }
        }
        return null;
    }

    /** What dma-debug found about a peer access, and the window concerned (whose site the report names). */
    record PeerFinding(Kind kind, Mapping window, String what) {
    }

    private static boolean overlaps(Mapping m, long addr, long len) {
        return addr < m.dmaAddr() + m.size() && m.dmaAddr() < addr + len;
    }

    /** {@code dma_map_resource} takes device memory only: no RAM, and a device region must decode all of it. */
    private void checkResource(long physAddr, long size) {
        HostMemory ram = sys.physical.ram();
        if (Long.compareUnsigned(physAddr, ram.size()) < 0) {
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
        Mapping m = find(mapped.segments().getFirst().dmaAddress(), Mapping.Type.SG, api, mapped.length(), direction, mapped);
        checkSyncDirection(m, direction, toCpu, api);
        for (Swiotlb.Bounce b : m.bounces()) {
            if (toCpu) {
                sys.swiotlb.syncForCpu(b);
            } else {
                sys.swiotlb.syncForDevice(b);
            }
        }
    }

    private void sync(long dmaAddress, long size, DmaDirection direction, boolean toCpu, String api) {
        if (size <= 0) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": " + api + " of size " + size);
        }
        Mapping m = containing(dmaAddress, size);
        if (m == null) {
            throw reportAndFail(Kind.UNKNOWN_ADDRESS, dmaAddress, size, api + " of 0x" + Long.toHexString(dmaAddress)
                    + "+" + size + ", which the device has not mapped", null);
        }
        if (m.type() == Mapping.Type.COHERENT) {
            throw reportAndFail(Kind.TYPE_MISMATCH, dmaAddress, size, api + " of coherent memory at 0x"
                    + Long.toHexString(dmaAddress) + " (made by " + m.type().apiName() + ")", m.site());
        }
        checkSyncDirection(m, direction, toCpu, api);
        for (Swiotlb.Bounce b : m.bounces()) {
            long lo = Math.max(dmaAddress, b.tlbAddr());
            long hi = Math.min(dmaAddress + size, b.tlbAddr() + b.size());
            if (lo < hi) {
                Swiotlb.Bounce part = new Swiotlb.Bounce(lo, b.origAddr() + (lo - b.tlbAddr()), hi - lo, b.firstSlot(), b.nslots());
                if (toCpu) {
                    sys.swiotlb.syncForCpu(part);
                } else {
                    sys.swiotlb.syncForDevice(part);
                }
            }
        }
    }

    private void checkSyncDirection(Mapping m, DmaDirection direction, boolean toCpu, String api) {
        if (direction != m.direction()) {
            throw reportAndFail(Kind.DIRECTION_MISMATCH, m.dmaAddr(), m.size(), api + " with direction " + direction
                    + " of memory mapped " + m.direction(), m.site());
        }
        if (toCpu && direction == DmaDirection.TO_DEVICE) {
            throw reportAndFail(Kind.BAD_DIRECTION, m.dmaAddr(), m.size(), api + ": syncs device read-only (TO_DEVICE) memory for the cpu", m.site());
        }
        if (!toCpu && direction == DmaDirection.FROM_DEVICE) {
            throw reportAndFail(Kind.BAD_DIRECTION, m.dmaAddr(), m.size(), api + ": syncs device write-only (FROM_DEVICE) memory to the device", m.site());
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
        long len = align(size);
        int order = 64 - Long.numberOfLeadingZeros((len >>> HostMemory.PAGE_SHIFT) - 1);
        IommuDomain domain = mappingDomain();
        long pfn = ram.allocPages(order);
        long phys = pfn << HostMemory.PAGE_SHIFT;
        long iova = -1;
        Arena arena = null;
        try {
            long dma;
            if (domain != null) {
                iova = allocIova(domain, len);
                try {
                    domain.pageTable().map(iova, phys, len, IoPageTable.PROT_READ | IoPageTable.PROT_WRITE);
                } catch (RuntimeException e) {
                    domain.iovaAllocator().free(iova, len);
                    iova = -1;
                    throw e;
                }
                dma = iova;
            } else {
                if (!fitsMask(phys, len, mask)) {
                    throw new ErrnoException(Errno.ENOMEM, device.name() + ": no memory below DMA mask 0x" + Long.toHexString(mask) + " for a coherent buffer");
                }
                dma = phys;
            }
            arena = Arena.ofShared();
            MemorySegment cpu = ram.slice(phys, size).reinterpret(size, arena, null);
            CoherentBuffer cb = new CoherentBuffer(dma, size, cpu, phys);
            Mapping m = new Mapping(Mapping.Type.COHERENT, dma, size, DmaDirection.BIDIRECTIONAL, domain, iova, len, null,
                    List.of(), cb, arena, pfn, site);
            register(m);
            trace(TraceKind.MAP, m, () -> "coherent phys 0x" + Long.toHexString(phys));
            return cb;
        } catch (RuntimeException e) {
            if (iova >= 0) {
                domain.pageTable().unmap(iova, len);
                domain.iovaAllocator().free(iova, len);
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
        Mapping m = find(buffer.dmaAddress(), Mapping.Type.COHERENT, "dma_free_coherent", buffer.size(), DmaDirection.BIDIRECTIONAL, null);
        if (m.coherent() != buffer && !m.coherent().equals(buffer)) {
            throw reportAndFail(Kind.UNKNOWN_ADDRESS, buffer.dmaAddress(), buffer.size(), "dma_free_coherent of a buffer the device did not allocate at 0x"
                    + Long.toHexString(buffer.dmaAddress()), m.site());
        }
        unregister(m);
        teardown(m, true);
        trace(TraceKind.UNMAP, m, () -> "coherent");
    }

    int liveCount() {
        int n = 0;
        for (List<Mapping> l : live.values()) {
            n += l.size();
        }
        return n;
    }

    /** Reports and undoes every live mapping; returns how many there were. */
    int reclaimLeaks() {
        List<Mapping> all = new ArrayList<>();
        for (List<Mapping> l : live.values()) {
            all.addAll(l);
        }
        for (Mapping m : all) {
            sys.debug.report(Kind.LEAK_AT_UNBIND, device.name(), m.dmaAddr(), m.size(), "driver has pending DMA allocations while released from device: "
                    + m.type().apiName() + " of " + m.size() + " bytes at 0x" + Long.toHexString(m.dmaAddr()) + " (" + m.direction() + ")", m.site());
            unregister(m);
            teardown(m, false);
            trace(TraceKind.UNMAP, m, () -> "reclaimed leak");
        }
        return all.size();
    }

    /** The live mapping whose bus range covers {@code [addr, addr+len)}, or null. */
    Mapping containing(long addr, long len) {
        List<Mapping> exact = live.get(addr);
        if (exact != null) {
            for (Mapping m : exact) {
                if (len <= m.size()) {
                    return m;
                }
            }
        }
        for (List<Mapping> l : live.values()) {
            for (Mapping m : l) {
                if (covers(m, addr, len)) {
                    return m;
                }
            }
        }
        return null;
    }

    private static boolean covers(Mapping m, long addr, long len) {
        if (m.sg() != null) {
            for (DmaSegment s : m.sg().segments()) {
                if (addr >= s.dmaAddress() && addr + len <= s.dmaAddress() + s.length()) {
                    return true;
                }
            }
            return false;
        }
        return addr >= m.dmaAddr() && addr + len <= m.dmaAddr() + m.size();
    }

    private Mapping find(long dmaAddress, Mapping.Type type, String api, long size, DmaDirection direction, MappedSg sg) {
        requireKnownDirection(direction, api);
        List<Mapping> l = live.get(dmaAddress);
        if (l == null || l.isEmpty()) {
            boolean twice;
            synchronized (recentlyUnmapped) {
                twice = recentlyUnmapped.containsKey(dmaAddress);
            }
            if (twice) {
                throw reportAndFail(Kind.DOUBLE_UNMAP, dmaAddress, size, api + " of 0x" + Long.toHexString(dmaAddress)
                        + ", which was already unmapped", null);
            }
            throw reportAndFail(Kind.UNKNOWN_ADDRESS, dmaAddress, size, api + " of 0x" + Long.toHexString(dmaAddress)
                    + ", which the device has not mapped", null);
        }
        Mapping other = null;
        for (Mapping m : l) {
            if (m.type() != type) {
                other = m;
                continue;
            }
            if (sg != null && !m.sg().equals(sg)) {
                other = m;
                continue;
            }
            if (m.size() != size) {
                throw reportAndFail(Kind.SIZE_MISMATCH, dmaAddress, size, api + " of 0x" + Long.toHexString(dmaAddress)
                        + " with size " + size + ", but it was mapped with size " + m.size(), m.site());
            }
            if (m.direction() != direction) {
                throw reportAndFail(Kind.DIRECTION_MISMATCH, dmaAddress, size, api + " of 0x" + Long.toHexString(dmaAddress)
                        + " with direction " + direction + ", but it was mapped " + m.direction(), m.site());
            }
            return m;
        }
        Mapping o = other;
        throw reportAndFail(Kind.TYPE_MISMATCH, dmaAddress, size, api + " of 0x" + Long.toHexString(dmaAddress)
                + ", which was made by " + (o == null ? "another call" : o.type().apiName()), o == null ? null : o.site());
    }

    private void register(Mapping m) {
        live.compute(m.dmaAddr(), (k, v) -> {
            if (v == null) {
                return List.of(m);
            }
            List<Mapping> n = new ArrayList<>(v);
            n.add(m);
            return List.copyOf(n);
        });
        if (m.type() == Mapping.Type.PEER) {
            peerWindows.add(m);
        } else if (sys.debug.enabled() && !m.translated()) {
            if (m.sg() != null) {
                for (DmaSegment s : m.sg().segments()) {
                    debugRanges.put(s.dmaAddress(), new Range(s.dmaAddress(), s.length(), m.direction(), m));
                }
            } else {
                debugRanges.put(m.dmaAddr(), new Range(m.dmaAddr(), m.size(), m.direction(), m));
            }
        }
    }

    private void unregister(Mapping m) {
        live.computeIfPresent(m.dmaAddr(), (k, v) -> {
            List<Mapping> n = new ArrayList<>(v);
            n.remove(m);
            return n.isEmpty() ? null : List.copyOf(n);
        });
        if (!m.translated() && !debugRanges.isEmpty()) {
            if (m.sg() != null) {
                for (DmaSegment s : m.sg().segments()) {
                    dropRange(s.dmaAddress(), m);
                }
            } else {
                dropRange(m.dmaAddr(), m);
            }
        }
        if (sys.debug.enabled()) {
            synchronized (recentlyUnmapped) {
                recentlyUnmapped.put(m.dmaAddr(), m.size());
            }
        }
        if (m.type() == Mapping.Type.PEER) {
            peerWindows.remove(m);
            if (sys.debug.enabled()) {
                synchronized (endedPeerWindows) {
                    if (endedPeerWindows.size() == RECENT_UNMAPS) {
                        endedPeerWindows.removeFirst();
                    }
                    endedPeerWindows.addLast(m);
                }
            }
        }
    }

    private void dropRange(long start, Mapping m) {
        Range r = debugRanges.get(start);
        if (r != null && r.mapping() == m) {
            debugRanges.remove(start, r);
        }
    }

    private void teardown(Mapping m, boolean copyBack) {
        boolean wasRevoked = revoked.remove(m) != null;
        if (wasRevoked) {
            copyBack = false;
            if (m.translated()) {
                m.domain().iovaAllocator().free(m.iova(), m.iovaLength());
            }
        } else if (m.translated()) {
            m.domain().pageTable().unmap(m.iova(), m.iovaLength());
            m.domain().iovaAllocator().free(m.iova(), m.iovaLength());
        }
        for (Swiotlb.Bounce b : m.bounces()) {
            if (copyBack && (m.direction() == DmaDirection.FROM_DEVICE || m.direction() == DmaDirection.BIDIRECTIONAL)) {
                sys.swiotlb.syncForCpu(b);
            }
            sys.swiotlb.unmap(b);
        }
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

    /**
     * Allocates IOVA under the device's mask. As {@code iommu_dma_alloc_iova} does for PCI devices, a device that
     * can address more than 32 bits still gets a 32-bit IOVA while those last (SAC before DAC).
     */
    private long allocIova(IommuDomain domain, long len) {
        long limit = mask == -1L ? IommuDomain.APERTURE_END : Math.min(mask + 1, IommuDomain.APERTURE_END);
        if (limit > DAC_BOUNDARY) {
            try {
                return domain.iovaAllocator().alloc(len, DAC_BOUNDARY);
            } catch (ErrnoException full) {
                if (full.errno() != Errno.ENOMEM) {
                    throw full;
                }
            }
        }
        return domain.iovaAllocator().alloc(len, limit);
    }

    private Swiotlb.Bounce bounce(long physAddr, long size) {
        if (sys.swiotlb == null) {
            throw new ErrnoException(Errno.EIO, device.name() + ": buffer at 0x" + Long.toHexString(physAddr) + "+" + size
                    + " is beyond DMA mask 0x" + Long.toHexString(mask) + " and there is no swiotlb");
        }
        return sys.swiotlb.map(physAddr, size, mask);
    }

    private void checkMap(DmaDirection direction, long size) {
        if (direction == null || direction == DmaDirection.NONE) {
            throw reportAndFail(Kind.BAD_DIRECTION, -1, size, "mapping with direction " + direction, null);
        }
        if (size <= 0) {
            throw new ErrnoException(Errno.EINVAL, device.name() + ": DMA mapping of size " + size);
        }
    }

    private void requireKnownDirection(DmaDirection direction, String api) {
        if (direction == null || direction == DmaDirection.NONE) {
            throw reportAndFail(Kind.BAD_DIRECTION, -1, 0, api + " with direction " + direction, null);
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

    private ErrnoException reportAndFail(Kind kind, long addr, long size, String message, Throwable site) {
        sys.debug.report(kind, device.name(), addr, size, message, site);
        return new ErrnoException(Errno.EINVAL, device.name() + ": " + message);
    }

    /** Emits a trace event; the detail text is built only while tracing is on (map/unmap is a hot path). */
    private void trace(TraceKind kind, Mapping m, Supplier<String> detail) {
        if (sys.tracer.isEnabled()) {
            sys.tracer.emit(kind, device.name(), m.dmaAddr(), m.size(), detail.get());
        }
    }

    private static int prot(DmaDirection d) {
        return (d.deviceReads() ? IoPageTable.PROT_READ : 0) | (d.deviceWrites() ? IoPageTable.PROT_WRITE : 0);
    }

    /** Whether {@code [addr, addr+size)} lies under {@code mask} (masks are unsigned; all-ones covers everything). */
    static boolean fitsMask(long addr, long size, long mask) {
        return Long.compareUnsigned(addr + size - 1, mask) <= 0;
    }

    private static long align(long n) {
        return (n + PAGE_MASK) & ~PAGE_MASK;
    }
}
