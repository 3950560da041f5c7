package dev.dmaplane.dma.impl;

import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.dma.FaultReason;
import dev.dmaplane.dma.PeerRouter;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mem.PhysicalAddressMap;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * A device's memory transactions: each is split at page (or page-table leaf) boundaries, translated by the
 * domain its IOMMU group is attached to now, and carried out on RAM or a peer's BAR. The device must be present
 * and have bus mastering enabled; in pass-through mode with dma-debug on, the target must lie in a live mapping.
 * A request the fabric below the root complex routes to a peer's memory ({@link PeerRouter}) goes there directly,
 * untranslated, as a PCIe switch forwards it; with dma-debug on it is first checked against the peer bus-address
 * windows the device was handed, so a stale one is caught although no IOMMU is on the way.
 * <p>Each completed transaction is counted once in the device's {@link TrafficCounters}, by where it landed (RAM, or
 * a peer's BAR whether a switch or the host bridge took it there), with one update per call, not per byte.
 * <p>Every path looks in the device's {@link TranslationCache} first and fills it from what went upstream; the
 * checks that refuse a request before a byte moves, and their reports, are {@link RequestChecks}.
 */
final class DeviceBusMaster implements BusMaster {
    private static final VarHandle LONG = ValueLayout.JAVA_LONG.varHandle();
    /** Bytes a copy from a peer's BAR moves per staging step. */
    private static final int STAGING = 64 * 1024;

    /** Entries the device's translation cache holds. */
    static final int ATC_ENTRIES = TranslationCache.ENTRIES;

    private final DeviceDma dma;
    private final PhysicalAddressMap physical;
    private final TranslationCache atc;
    private final RequestChecks checks;

    DeviceBusMaster(DeviceDma dma) {
        this.dma = dma;
        this.physical = dma.sys.physical;
        this.atc = new TranslationCache(dma.sys, dma.group);
        this.checks = new RequestChecks(dma);
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
        checks.checkRequester(addr, n, write);
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
                checks.checkDecoded(addr, phys, n, write, write);
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
            checks.checkDecoded(addr, run.phys(), run.length(), write, write);
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
                    || !RequestChecks.fitsWidth(s, n, srcBits) || !RequestChecks.fitsWidth(d, n, dstBits)) {
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
            throw checks.refuse(busAddr, true, FaultReason.MISALIGNED, "AtomicOp address is not 8-byte aligned");
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
        checks.checkDecoded(busAddr, phys, 8, true, false);
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
                checks.checkRequester(addr, n, write);
                if (dma.sys.debug.enabled()) {
                    checks.checkPeerWindow(addr, n, write);
                }
                yield p;
            }
            case PeerRouter.Refused r -> {
                checks.checkRequester(addr, 1, write);
                throw checks.unsupported(addr, remaining, write, posted, null, r.reason());
            }
        };
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
        checks.checkRequester(addr, 1, write);
        IommuDomain.Run r;
        try {
            r = domain.translateRun(dma.deviceName(), addr, remaining, write);
        } catch (DmaFaultException e) {
            throw checks.debugFault(domain, e, addr, 1, write);
        }
        checks.checkRequester(addr, r.length(), write);
        return r;
    }

    private long translate(IommuDomain domain, long addr, long len, boolean write) {
        checks.checkRequester(addr, len, write);
        String dev = dma.deviceName();
        if (domain == null || domain.type() == IommuDomainType.IDENTITY) {
            if (dma.sys.debug.enabled()) {
                checks.checkPassThrough(addr, len, write);
            }
            return addr;
        }
        try {
            return domain.translate(dev, addr, len, write);
        } catch (DmaFaultException e) {
            throw checks.debugFault(domain, e, addr, len, write);
        }
    }
}
