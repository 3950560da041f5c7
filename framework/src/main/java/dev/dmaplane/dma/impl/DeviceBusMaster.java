package dev.dmaplane.dma.impl;

import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.dma.DmaDebugReport.Kind;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.dma.FaultReason;
import dev.dmaplane.dma.PeerRouter;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mem.PhysicalAddressMap;
import dev.dmaplane.mem.PhysicalRegion;
import dev.dmaplane.trace.TraceKind;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.util.Map;

/**
 * A device's memory transactions: each is split at page (or page-table leaf) boundaries, translated by the
 * domain its IOMMU group is attached to now, and carried out on RAM or a peer's BAR. The device must be present
 * and have bus mastering enabled; in pass-through mode with dma-debug on, the target must lie in a live mapping.
 * A request the fabric below the root complex routes to a peer's memory ({@link PeerRouter}) goes there directly,
 * untranslated, as a PCIe switch forwards it; with dma-debug on it is first checked against the peer bus-address
 * windows the device was handed, so a stale one is caught although no IOMMU is on the way.
 * <p>Each completed transaction is counted once in the device's {@link TrafficCounters}, by where it landed (RAM, or
 * a peer's BAR whether a switch or the host bridge took it there), with one update per call, not per byte.
 * <p>Every path looks in the device's {@link TranslationCache} first and fills it from what went upstream.
 * <p>Size: close to 600 lines, because the transaction paths (plain, probe, cut-through, chained) and the
 * requester, host-bridge and dma-debug checks every one of them makes before a byte moves are one data path.
 */
final class DeviceBusMaster implements BusMaster {
    private static final VarHandle LONG = ValueLayout.JAVA_LONG.varHandle();
    /** A memory request TLP never crosses a 4 KiB boundary (PCIe Base Spec 2.2.7). */
    private static final long TLP_BOUNDARY = 4096;
    /** Bytes a copy from a peer's BAR moves per staging step. */
    private static final int STAGING = 64 * 1024;

    /** Entries the device's translation cache holds. */
    static final int ATC_ENTRIES = TranslationCache.ENTRIES;

    private final DeviceDma dma;
    private final PhysicalAddressMap physical;
    private final TranslationCache atc;

    DeviceBusMaster(DeviceDma dma) {
        this.dma = dma;
        this.physical = dma.sys.physical;
        this.atc = new TranslationCache(dma.sys, dma.group);
    }

    @Override
    public void read(long busAddr, MemorySegment dst) {
        transfer(busAddr, dst, false);
    }

    @Override
    public void write(long busAddr, MemorySegment src) {
        transfer(busAddr, src, true);
    }

    /** Requests that went upstream to the IOMMU for a translation (cache misses; a statistic, racy by design). */
    private long translationRequests;

    long translationRequests() {
        return translationRequests;
    }

    /**
     * RAM for the first bytes of {@code [addr, addr + len)} (up to the end of the cached run) from the translation
     * cache, after the requester checks; null on a miss.
     */
    private MemorySegment cached(long addr, long len, boolean write) {
        TranslationCache.Entry e = atc.lookup(addr, write);
        if (e == null) {
            return null;
        }
        long n = Math.min(len, e.end() - addr);
        checkRequester(addr, n, write);
        return e.ram().asSlice(addr - e.iova(), n);
    }

    /**
     * One transaction the fabric sent upstream, from {@code addr}: translated by the domain (every check of
     * {@link #run}), and remembered by the translation cache when it reached RAM through a paging domain.
     * {@code epoch} is the fabric's route epoch read before the route was asked.
     */
    private IommuDomain.Run upstream(long epoch, long addr, long remaining, boolean write) {
        translationRequests++;
        IommuDomain domain = translating();
        try {
            long generation = domain == null ? 0 : domain.iotlbGeneration();
            IommuDomain.Run run = run(domain, addr, remaining, write);
            if (domain != null && domain.type().paging()) {
                // the whole leaf that maps addr, from the start of its 4 KiB page on: the leaf maps all of it alike,
                // and an ATC holds translations of whole pages
                long back = addr & (HostMemory.PAGE_SIZE - 1);
                long ahead = Math.max(run.length(), domain.contiguousFrom(addr));
                MemorySegment ram = ramOf(run.phys() - back, ahead + back);
                if (ram != null) {
                    atc.fill(new TranslationCache.Entry(domain, generation, epoch, addr - back, addr - back + ram.byteSize(), write, ram));
                }
            }
            return run;
        } finally {
            translated();
        }
    }

    /** The RAM {@code run} reaches, up to the end of its 2 MiB section; null when it is not RAM. */
    private MemorySegment ramOf(IommuDomain.Run run) {
        return ramOf(run.phys(), run.length());
    }

    /** The RAM at {@code [phys, phys + length)}, up to the end of its 2 MiB section; null when it is not RAM. */
    private MemorySegment ramOf(long phys, long length) {
        HostMemory ram = physical.ram();
        long n = Math.min(length, HostMemory.HUGE_PAGE_SIZE - (phys & (HostMemory.HUGE_PAGE_SIZE - 1)));
        return ram.contains(phys, n) ? ram.slice(phys, n) : null;
    }

    /**
     * One transaction per page-table leaf (or 4 KiB page), each translated before any byte moves; the bytes of the
     * transactions that completed are counted once, by where they landed, when the call ends.
     */
    private void transfer(long busAddr, MemorySegment data, boolean write) {
        long len = data.byteSize();
        long done = 0;
        long ram = 0;
        long peers = 0;
        try {
            while (done < len) {
                long addr = busAddr + done;
                MemorySegment hit = cached(addr, len - done, write);
                if (hit != null) {
                    long n = hit.byteSize();
                    if (write) {
                        MemorySegment.copy(data, done, hit, 0, n);
                    } else {
                        MemorySegment.copy(hit, 0, data, done, n);
                    }
                    done += n;
                    ram += n;
                    continue;
                }
                long epoch = dma.sys.peerRouter.epoch();
                PeerRouter.ToPeer peer = peer(addr, len - done, write, write);
                if (peer != null) {
                    long n = peerChunk(peer, len - done);
                    if (write) {
                        peer.region().write(peer.offset(), data.asSlice(done, n));
                    } else {
                        peer.region().read(peer.offset(), data.asSlice(done, n));
                    }
                    done += n;
                    peers += n;
                    continue;
                }
                IommuDomain.Run run = upstream(epoch, addr, len - done, write);
                long n = run.length();
                long phys = run.phys();
                checkDecoded(addr, phys, n, write, write);
                if (write) {
                    physical.write(phys, data.asSlice(done, n));
                } else {
                    physical.read(phys, data.asSlice(done, n));
                }
                done += n;
                if (physical.ram().contains(phys, n)) {
                    ram += n;
                } else {
                    peers += n; // a BAR through the host bridge (dma_map_resource)
                }
            }
        } finally {
            dma.traffic.moved(write, ram, peers);
        }
    }

    /**
     * The loop of {@link #transfer} without the copies: each transaction translated, routed and decoded in order;
     * a translation it fetches stays in the translation cache for the transfer that follows.
     */
    @Override
    public void probe(long busAddr, long length, boolean write) {
        if (length < 0) {
            throw new ErrnoException(Errno.EINVAL, "negative length " + length);
        }
        long done = 0;
        while (done < length) {
            long addr = busAddr + done;
            MemorySegment hit = cached(addr, length - done, write);
            if (hit != null) {
                done += hit.byteSize();
                continue;
            }
            long epoch = dma.sys.peerRouter.epoch();
            PeerRouter.ToPeer peer = peer(addr, length - done, write, write);
            if (peer != null) {
                done += peerChunk(peer, length - done);
                continue;
            }
            IommuDomain.Run run = upstream(epoch, addr, length - done, write);
            checkDecoded(addr, run.phys(), run.length(), write, write);
            done += run.length();
        }
    }

    /**
     * Direct RAM-to-RAM copy where both ends translate to RAM, one {@code MemorySegment.copy} per pair of
     * translated chunks; a peer or device-memory end goes through a staging buffer chunk by chunk.
     */
    @Override
    public void copyTo(long busAddr, BusMaster target, long targetBusAddr, long length) {
        if (length < 0) {
            throw new ErrnoException(Errno.EINVAL, "negative length " + length);
        }
        if (!(target instanceof DeviceBusMaster t) || t.physical != physical) {
            BusMaster.super.copyTo(busAddr, target, targetBusAddr, length);
            return;
        }
        long done = 0;
        long cutThrough = 0;
        try {
            while (done < length) {
                MemorySegment src = ramView(busAddr + done, length - done, false);
                MemorySegment dst = src == null ? null : t.ramView(targetBusAddr + done, src.byteSize(), true);
                if (dst != null) {
                    long n = dst.byteSize();
                    MemorySegment.copy(src, 0, dst, 0, n);
                    done += n;
                    cutThrough += n;
                } else if (src != null) {
                    // RAM into a peer's BAR (the switch routes it) or a window the IOMMU maps onto one: the target
                    // takes the source's RAM as it is, the way a write carries the read's data, no staging copy
                    t.write(targetBusAddr + done, src);
                    dma.traffic.moved(false, src.byteSize(), 0);
                    done += src.byteSize();
                } else {
                    // from a peer's BAR: straight into the target's RAM, or staged when both ends are BARs
                    MemorySegment into = t.ramView(targetBusAddr + done, Math.min(length - done, STAGING), true);
                    if (into != null) {
                        read(busAddr + done, into);
                        t.dma.traffic.moved(true, into.byteSize(), 0);
                        done += into.byteSize();
                        continue;
                    }
                    long n = Math.min(length - done, STAGING);
                    MemorySegment buf = MemorySegment.ofArray(new byte[(int) n]);
                    read(busAddr + done, buf);
                    t.write(targetBusAddr + done, buf);
                    done += n;
                }
            }
        } finally {
            movedRamToRam(t, cutThrough);
        }
    }

    /** Counts {@code bytes} this device read from RAM and {@code target} wrote to RAM, cut through. */
    private void movedRamToRam(DeviceBusMaster target, long bytes) {
        if (bytes != 0) {
            dma.traffic.moved(false, bytes, 0);
            target.dma.traffic.moved(true, bytes, 0);
        }
    }

    /**
     * The first descriptor as {@link #copyTo(long, BusMaster, long, long)} does it, which leaves the source's and the
     * target's translation caches holding the runs it reached; then, in one go, every following descriptor both
     * entries serve, with the checks that do not depend on the address (entries still current, device present, bus
     * mastering enabled) made once for the run and the devices' address widths per descriptor. It stops at the first descriptor
     * either entry misses, for the caller's next call to translate. A change that lands while the run is under way
     * takes effect after it, as an IOTLB invalidation completes only once the DMA in flight has drained.
     */
    @Override
    public int copyTo(long busAddr, BusMaster target, long targetBusAddr, long[] offsets, long[] targetOffsets,
                      int[] lengths, int from, int to) {
        BusMaster.checkChain(offsets, targetOffsets, lengths, from, to);
        copyTo(busAddr + offsets[from], target, targetBusAddr + targetOffsets[from], lengths[from]);
        if (!(target instanceof DeviceBusMaster t) || t.physical != physical) {
            return 1;
        }
        TranslationCache.Entry src = runEntry(false);
        TranslationCache.Entry dst = t.runEntry(true);
        if (src == null || dst == null) {
            return 1;
        }
        int srcBits = dma.device.dmaAddressBits();
        int dstBits = t.dma.device.dmaAddressBits();
        int i = from + 1;
        long moved = 0;
        for (; i < to; i++) {
            long n = lengths[i];
            long s = busAddr + offsets[i];
            long d = targetBusAddr + targetOffsets[i];
            if (n <= 0 || s < src.iova() || s > src.end() - n || d < dst.iova() || d > dst.end() - n
                    || !fitsWidth(s, n, srcBits) || !fitsWidth(d, n, dstBits)) {
                break;
            }
            MemorySegment.copy(src.ram(), s - src.iova(), dst.ram(), d - dst.iova(), n);
            moved += n;
        }
        movedRamToRam(t, moved);
        return i - from;
    }

    /**
     * The translation cache's entry when it serves {@code write}, is current, and the device may put requests on
     * the bus at all (present, bus mastering enabled); else null.
     */
    private TranslationCache.Entry runEntry(boolean write) {
        TranslationCache.Entry e = atc.last(write);
        if (e == null || !dma.device.isPresent() || !dma.device.busMasterEnabled()) {
            return null;
        }
        return e;
    }

    /**
     * The RAM behind {@code [addr, addr + n)} for the longest {@code n <= remaining} one transaction covers (one
     * page-table leaf, one RAM section), after every check of {@link #transfer}; null when the address goes to a
     * peer or to device memory.
     */
    private MemorySegment ramView(long addr, long remaining, boolean write) {
        MemorySegment hit = cached(addr, remaining, write);
        if (hit != null) {
            return hit;
        }
        long epoch = dma.sys.peerRouter.epoch();
        if (peer(addr, remaining, write, write) != null) {
            return null;
        }
        return ramOf(upstream(epoch, addr, remaining, write));
    }

    @Override
    public long readLong(long busAddr) {
        MemorySegment buf = MemorySegment.ofArray(new long[1]);
        read(busAddr, buf);
        return buf.get(ValueLayout.JAVA_LONG, 0);
    }

    @Override
    public void writeLong(long busAddr, long value) {
        write(busAddr, MemorySegment.ofArray(new long[]{value}));
    }

    @Override
    public long compareAndSwap(long busAddr, long compare, long swap) {
        MemorySegment v = atomicTarget(busAddr);
        long old = (long) LONG.compareAndExchange(v, 0L, compare, swap);
        dma.traffic.atomic();
        return old;
    }

    @Override
    public long fetchAndAdd(long busAddr, long add) {
        MemorySegment v = atomicTarget(busAddr);
        long old = (long) LONG.getAndAdd(v, 0L, add);
        dma.traffic.atomic();
        return old;
    }

    private MemorySegment atomicTarget(long busAddr) {
        if ((busAddr & 7) != 0) {
            throw refuse(busAddr, true, FaultReason.MISALIGNED, "AtomicOp address is not 8-byte aligned");
        }
        PeerRouter.ToPeer peer = peer(busAddr, 8, true, false);
        if (peer != null) {
            MemorySegment v = peerChunk(peer, 8) == 8 ? peer.region().atomicView(peer.offset(), 8) : null;
            if (v == null) {
                throw new ErrnoException(Errno.EOPNOTSUPP, peer.region().name() + " does not support atomic operations at 0x"
                        + Long.toHexString(busAddr));
            }
            return v;
        }
        long phys;
        IommuDomain domain = translating();
        try {
            translate(domain, busAddr, 8, false);
            phys = translate(domain, busAddr, 8, true);
        } finally {
            translated();
        }
        checkDecoded(busAddr, phys, 8, true, false);
        return physical.atomicView(phys);
    }

    /** The domain attached now, which no switch replaces until {@link #translated} ({@code IommuGroup.translating}). */
    private IommuDomain translating() {
        return dma.group == null ? null : dma.group.translating();
    }

    private void translated() {
        if (dma.group != null) {
            dma.group.translated();
        }
    }

    private static long chunk(IommuDomain domain, long addr) {
        if (domain != null && domain.type().paging()) {
            return domain.contiguousFrom(addr);
        }
        return HostMemory.PAGE_SIZE - (addr & (HostMemory.PAGE_SIZE - 1));
    }

    /**
     * Where the fabric below the root complex delivers a request at {@code addr}: the peer memory a switch routes it
     * to (after the requester checks, for the part of {@code remaining} bytes inside it), or null when it goes
     * upstream to the IOMMU. A request the fabric cannot complete is refused as an Unsupported Request, which the
     * fabric logs; {@code posted} tells a memory write from a read or an AtomicOp, which get a completion.
     */
    private PeerRouter.ToPeer peer(long addr, long remaining, boolean write, boolean posted) {
        PeerRouter.Route route = dma.sys.peerRouter.route(dma.device, addr);
        return switch (route) {
            case PeerRouter.Upstream u -> null;
            case PeerRouter.ToPeer p -> {
                long n = peerChunk(p, remaining);
                checkRequester(addr, n, write);
                if (dma.sys.debug.enabled()) {
                    checkPeerWindow(addr, n, write);
                }
                yield p;
            }
            case PeerRouter.Refused r -> {
                checkRequester(addr, 1, write);
                throw unsupported(addr, remaining, write, posted, null, r.reason());
            }
        };
    }

    /**
     * The host bridge's side of a request that went upstream: RAM or a device region must decode {@code [phys, phys +
     * n)}, else the root complex completes the request at {@code addr} as an Unsupported Request.
     */
    private void checkDecoded(long addr, long phys, long n, boolean write, boolean posted) {
        if (physical.ram().contains(phys, n)) {
            return;
        }
        PhysicalRegion r = physical.regionAt(phys);
        if (r == null || phys - r.base() > r.size() - n) {
            throw unsupported(addr, n, write, posted, null, String.format("the host bridge decodes nothing at %#x+%#x", phys, n));
        }
        if (!r.decodes()) {
            throw unsupported(addr, n, write, posted, r, String.format("%s at %#x does not decode memory now", r.name(), phys));
        }
    }

    /**
     * A request the fabric completes as an Unsupported Request: the fabric logs the one TLP at {@code addr} (its
     * bytes up to {@code remaining}, not crossing 4 KiB) and the region {@code at} that did not decode it, if any;
     * then it is traced and refused.
     */
    private DmaFaultException unsupported(long addr, long remaining, boolean write, boolean posted, PhysicalRegion at,
                                          String reason) {
        int tlp = (int) Math.min(remaining, TLP_BOUNDARY - (addr & (TLP_BOUNDARY - 1)));
        dma.sys.peerRouter.unsupportedRequest(dma.device, addr, Math.max(1, tlp), posted, at);
        return refuse(addr, write, FaultReason.UNSUPPORTED_REQUEST, reason);
    }

    private static long peerChunk(PeerRouter.ToPeer peer, long remaining) {
        return Math.min(remaining, peer.region().size() - peer.offset());
    }

    /**
     * One transaction from {@code addr}: its physical address and length (at most {@code remaining}, not crossing a
     * page-table leaf or, without paging, a 4 KiB page), after every check of {@link #translate}.
     */
    private IommuDomain.Run run(IommuDomain domain, long addr, long remaining, boolean write) {
        if (domain == null || !domain.type().paging()) {
            long n = Math.min(remaining, chunk(domain, addr));
            return new IommuDomain.Run(translate(domain, addr, n, write), n);
        }
        checkRequester(addr, 1, write);
        IommuDomain.Run r;
        try {
            r = domain.translateRun(dma.deviceName(), addr, remaining, write);
        } catch (DmaFaultException e) {
            throw debugFault(domain, e, addr, 1, write);
        }
        checkRequester(addr, r.length(), write);
        return r;
    }

    private long translate(IommuDomain domain, long addr, long len, boolean write) {
        checkRequester(addr, len, write);
        String dev = dma.deviceName();
        if (domain == null || domain.type() == IommuDomainType.IDENTITY) {
            if (dma.sys.debug.enabled()) {
                checkPassThrough(addr, len, write);
            }
            return addr;
        }
        try {
            return domain.translate(dev, addr, len, write);
        } catch (DmaFaultException e) {
            throw debugFault(domain, e, addr, len, write);
        }
    }

    /** An IOMMU refusal, reported to dma-debug first (with the revoked mapping it hit, if any). */
    private DmaFaultException debugFault(IommuDomain domain, DmaFaultException e, long addr, long len, boolean write) {
        if (dma.sys.debug.enabled() && domain.type() == IommuDomainType.DMA) {
            Map.Entry<Mapping, String> rv = dma.entries.revokedAt(addr, len);
            if (rv != null) {
                reportRevoked(rv, addr, len, write);
                return e;
            }
            dma.sys.debug.report(e.reason() == FaultReason.PERMISSION ? Kind.ACCESS_READ_ONLY : Kind.ACCESS_UNMAPPED,
                    dma.deviceName(), addr, len, "device " + (write ? "write" : "read") + " at iova 0x"
                            + Long.toHexString(addr) + " refused by the IOMMU", null);
        }
        return e;
    }

    /**
     * What the requester itself must satisfy to put a request on the bus at all: presence, Bus Master Enable, and an
     * address its hardware can drive ({@link dev.dmaplane.device.Device#dmaAddressBits}). The kernel's DMA mask is not
     * checked here: it bounds what the DMA API hands out ({@code dma_capable} of {@code include/linux/dma-direct.h},
     * which {@code kernel/dma/direct.c} asks), not what the device can put on the bus, so a VFIO user's IOVA is
     * bounded by the IOMMU's aperture and this width.
     */
    private void checkRequester(long addr, long len, boolean write) {
        if (!dma.device.isPresent()) {
            throw refuse(addr, write, FaultReason.DEVICE_GONE, "device has left its bus");
        }
        if (!dma.device.busMasterEnabled()) {
            throw refuse(addr, write, FaultReason.BUS_MASTER_DISABLED, "bus mastering is disabled (command register BME clear)");
        }
        int bits = dma.device.dmaAddressBits();
        if (!fitsWidth(addr, len, bits)) {
            throw refuse(addr, write, FaultReason.OUT_OF_RANGE, "address beyond the device's " + bits + "-bit address width");
        }
    }

    /** Whether {@code [addr, addr + len)} lies below {@code 2^bits} without wrapping past the end of the 64-bit space. */
    private static boolean fitsWidth(long addr, long len, int bits) {
        long last = addr + len - 1;
        return Long.compareUnsigned(last, addr) >= 0 && (bits == 64 || last >>> bits == 0);
    }

    /** A transaction the bus never carries (no IOMMU involved): traced as a fault, then refused. */
    private DmaFaultException refuse(long addr, boolean write, FaultReason why, String reason) {
        dma.sys.tracer.emit(TraceKind.FAULT, dma.deviceName(), addr, 0, (write ? "write" : "read") + ": " + reason);
        return new DmaFaultException(dma.deviceName(), addr, write, why, reason);
    }

    private void reportRevoked(Map.Entry<Mapping, String> rv, long addr, long len, boolean write) {
        dma.sys.debug.report(Kind.ACCESS_REVOKED, dma.deviceName(), addr, len, "device " + (write ? "write" : "read")
                + " at 0x" + Long.toHexString(addr) + "+" + len + " into a mapping whose access was revoked: "
                + rv.getValue(), rv.getKey().site());
    }

    /**
     * dma-debug on the peer path, which the IOMMU never sees: a request into a bus-address window the device was
     * handed ({@link dev.dmaplane.dma.DmaApi#mapPeer}) and that was revoked or unmapped since is reported with the
     * window's mapping site and refused before any byte moves.
     */
    private void checkPeerWindow(long addr, long len, boolean write) {
        DebugEntries.PeerFinding f = dma.entries.checkPeerAccess(addr, len, write);
        if (f == null) {
            return;
        }
        dma.sys.debug.report(f.kind(), dma.deviceName(), addr, len, "device " + (write ? "write" : "read") + " at peer bus address 0x"
                + Long.toHexString(addr) + "+" + len + " into " + f.what(), f.window().site());
        throw refuse(addr, write, f.kind() == Kind.ACCESS_READ_ONLY ? FaultReason.DEBUG_READ_ONLY : FaultReason.DEBUG_UNMAPPED,
                "dma-debug: " + f.what());
    }

    private void checkPassThrough(long addr, long len, boolean write) {
        Map.Entry<Long, DebugEntries.Range> e = dma.entries.ranges.floorEntry(addr);
        DebugEntries.Range r = e == null ? null : e.getValue();
        if (r == null || addr + len > r.start() + r.length()) {
            Map.Entry<Mapping, String> rv = dma.entries.revokedAt(addr, len);
            if (rv != null) {
                reportRevoked(rv, addr, len, write);
                throw refuse(addr, write, FaultReason.DEBUG_UNMAPPED, "dma-debug: mapping was revoked: " + rv.getValue());
            }
            dma.sys.debug.report(Kind.ACCESS_UNMAPPED, dma.deviceName(), addr, len, "device " + (write ? "write" : "read")
                    + " at 0x" + Long.toHexString(addr) + "+" + len + " outside every live DMA mapping", null);
            throw refuse(addr, write, FaultReason.DEBUG_UNMAPPED, "dma-debug: no live mapping covers it");
        }
        if (write && r.direction() == DmaDirection.TO_DEVICE) {
            dma.sys.debug.report(Kind.ACCESS_READ_ONLY, dma.deviceName(), addr, len, "device write at 0x" + Long.toHexString(addr)
                    + " into memory mapped TO_DEVICE", r.mapping().site());
            throw refuse(addr, write, FaultReason.DEBUG_READ_ONLY, "dma-debug: mapping is TO_DEVICE");
        }
    }
}
