package dev.dmaplane.dma;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.dma.DmaDebugReport.Kind;
import dev.dmaplane.dma.impl.DmaSubsystem;
import dev.dmaplane.dma.impl.Swiotlb;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.Iommu;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mem.PhysicalAddressMap;
import dev.dmaplane.testing.TestDevice;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The DMA API as Documentation/core-api/dma-api.rst and dma-api-howto.rst define it, with the checks of
 * kernel/dma/debug.c, through an IOMMU DMA domain (drivers/iommu/dma-iommu.c) and in pass-through with swiotlb
 * (kernel/dma/direct.c, kernel/dma/swiotlb.c). Every transfer is real bytes, checked on the other side.
 */
class DmaApiTest {
    private final Tracer tracer = new Tracer();
    private final HostMemory mem = new HostMemory(8L << 30);
    private final PhysicalAddressMap phys = new PhysicalAddressMap(mem);
    private final DmaDebug debug = new DmaDebug(tracer, true);
    private final Swiotlb swiotlb = new Swiotlb(mem, 1);
    private final DeviceCore core = new DeviceCore(tracer);

    private Iommu iommu;
    private DmaSubsystem dma;

    @AfterEach
    void close() {
        mem.close();
    }

    private TestDevice device(IommuDomainType defaultType) {
        iommu = new Iommu(true, defaultType, tracer);
        TestDevice dev = new TestDevice("0000:03:00.0", 0x1da0, 1, 0x030200);
        iommu.addGroup(List.of(dev));
        dma = new DmaSubsystem(phys, iommu, debug, tracer, swiotlb);
        core.onUnbind(dma::unbound);
        core.addDevice(dev, dma.attach(dev));
        return dev;
    }

    private long page(byte fill) {
        long pa = mem.allocPages(0) << HostMemory.PAGE_SHIFT;
        mem.slice(pa, HostMemory.PAGE_SIZE).fill(fill);
        return pa;
    }

    private static byte[] bytes(MemorySegment s) {
        return s.toArray(ValueLayout.JAVA_BYTE);
    }

    @Test
    void deviceReadsAndWritesThroughItsIommuDomain() {
        TestDevice dev = device(IommuDomainType.DMA);
        DmaApi api = dev.dma();
        long src = page((byte) 0x11);
        long dst = page((byte) 0);
        long srcDma = api.mapSingle(src + 100, 1000, DmaDirection.TO_DEVICE);
        long dstDma = api.mapSingle(dst, 4096, DmaDirection.FROM_DEVICE);
        assertNotEquals(src + 100, srcDma, "an IOVA, not the physical address");
        assertEquals(100, srcDma & 0xfff, "the offset into the page is kept");
        assertTrue(srcDma + 1000 <= 1L << 32, "IOVAs fit the default 32-bit mask");

        MemorySegment buf = MemorySegment.ofArray(new byte[1000]);
        api.busMaster().read(srcDma, buf);
        assertArrayEquals(bytes(mem.slice(src + 100, 1000)), bytes(buf));
        buf.fill((byte) 0x77);
        api.busMaster().write(dstDma + 8, buf);
        assertEquals(0x77, mem.slice(dst + 8, 1).get(ValueLayout.JAVA_BYTE, 0));
        assertEquals(0, mem.slice(dst, 1).get(ValueLayout.JAVA_BYTE, 0));

        DmaFaultException f = assertThrows(DmaFaultException.class, () -> api.busMaster().write(srcDma, buf));
        assertTrue(f.isWrite());
        assertEquals(FaultReason.PERMISSION, f.reason());
        assertEquals(0x11, mem.slice(src + 100, 1).get(ValueLayout.JAVA_BYTE, 0), "a refused write changes no byte");
        assertEquals(1, iommu.faults().size());
        assertEquals(1, debug.reports(Kind.ACCESS_READ_ONLY).size());

        api.unmapSingle(srcDma, 1000, DmaDirection.TO_DEVICE);
        api.unmapSingle(dstDma, 4096, DmaDirection.FROM_DEVICE);
        assertThrows(DmaFaultException.class, () -> api.busMaster().read(srcDma, buf));
        assertEquals(0, iommu.groupOf(dev).orElseThrow().defaultDomain().mappedBytes());
        assertEquals(0, dma.activeMappings());
    }

    /**
     * kernel/dma/mapping.c {@code dma_set_mask} and drivers/iommu/dma-iommu.c {@code iommu_dma_alloc_iova}: any mask
     * of the form 2^n - 1 is a device's reach, capped by the IOVA aperture; {@code DMA_BIT_MASK(64)}, 2^63 - 1 and
     * masks wider than the 48-bit aperture map and are read through like a 32-bit one (mask + 1 overflowed).
     */
    @Test
    void masksUpToSixtyFourBitsAllocateIova() {
        TestDevice dev = device(IommuDomainType.DMA);
        DmaApi api = dev.dma();
        long src = page((byte) 0x5A);
        for (long mask : new long[] {-1L, Long.MAX_VALUE, (1L << 49) - 1, (1L << 48) - 1, (1L << 44) - 1}) {
            api.setDmaMask(mask);
            assertEquals(mask, api.dmaMask());
            long d = api.mapSingle(src, 4096, DmaDirection.TO_DEVICE);
            assertEquals(0x5A5A5A5A5A5A5A5AL, api.busMaster().readLong(d), "mask 0x" + Long.toHexString(mask));
            api.unmapSingle(d, 4096, DmaDirection.TO_DEVICE);
        }
        assertEquals(0, dma.activeMappings());
    }

    @Test
    void scatterGatherMergesContiguousIovaUpToTheMaxSegmentSize() {
        TestDevice dev = device(IommuDomainType.DMA);
        DmaApi api = dev.dma();
        long[] pages = new long[40];
        for (int i = 0; i < pages.length; i++) {
            pages[i] = page((byte) i);
            page((byte) -1); // a gap, so no two pages are physically adjacent
        }
        SgTable table = SgTable.fromPages(pages, HostMemory.PAGE_SIZE, 0, pages.length * HostMemory.PAGE_SIZE);
        assertEquals(40, table.entries().size());
        MappedSg m = api.mapSg(table, DmaDirection.BIDIRECTIONAL);
        assertEquals(List.of(160L * 1024), List.of(m.length()));
        assertEquals(3, m.segments().size(), "64 KiB default max segment: 64+64+32");
        assertEquals(64 * 1024, m.segments().getFirst().length());
        MemorySegment all = MemorySegment.ofArray(new byte[40 * 4096]);
        long off = 0;
        for (DmaSegment s : m.segments()) {
            api.busMaster().read(s.dmaAddress(), all.asSlice(off, s.length()));
            off += s.length();
        }
        for (int i = 0; i < 40; i++) {
            assertEquals((byte) i, all.get(ValueLayout.JAVA_BYTE, i * 4096L + 17));
        }
        api.unmapSg(m, DmaDirection.BIDIRECTIONAL);
        api.setMaxSegmentSize(1 << 20);
        MappedSg one = api.mapSg(table, DmaDirection.TO_DEVICE);
        assertEquals(1, one.segments().size());
        api.unmapSg(one, DmaDirection.TO_DEVICE);
        assertEquals(0, dma.activeMappings());
    }

    @Test
    void misuseIsReportedRefusedAndChangesNothing() {
        TestDevice dev = device(IommuDomainType.DMA);
        DmaApi api = dev.dma();
        long pa = page((byte) 5);
        long d = api.mapSingle(pa, 512, DmaDirection.TO_DEVICE);

        ErrnoException e = assertThrows(ErrnoException.class, () -> api.unmapSingle(d, 256, DmaDirection.TO_DEVICE));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("256") && e.getMessage().contains("512"), e.getMessage());
        assertEquals(1, debug.reports(Kind.SIZE_MISMATCH).size());
        assertEquals(1, debug.reports(Kind.SIZE_MISMATCH).getFirst().mapSite().stream()
                .filter(f -> f.getMethodName().equals("misuseIsReportedRefusedAndChangesNothing")).count(),
                "the report names the site that made the mapping");

        assertThrows(ErrnoException.class, () -> api.unmapSingle(d, 512, DmaDirection.FROM_DEVICE));
        assertEquals(1, debug.reports(Kind.DIRECTION_MISMATCH).size());
        assertThrows(ErrnoException.class, () -> api.syncSingleForCpu(d, 512, DmaDirection.TO_DEVICE));
        assertEquals(1, debug.reports(Kind.BAD_DIRECTION).size());
        assertThrows(ErrnoException.class, () -> api.unmapSingle(d + 4096, 512, DmaDirection.TO_DEVICE));
        assertEquals(1, debug.reports(Kind.UNKNOWN_ADDRESS).size());
        assertThrows(ErrnoException.class, () -> api.mapSingle(pa, 0, DmaDirection.TO_DEVICE));
        assertThrows(ErrnoException.class, () -> api.mapSingle(pa, 1, DmaDirection.NONE));
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class, () -> api.mapSingle(mem.end() - 1, 2, DmaDirection.TO_DEVICE)).errno());

        // nothing changed: the mapping still works and unmaps once
        MemorySegment b = MemorySegment.ofArray(new byte[512]);
        api.busMaster().read(d, b);
        assertEquals(5, b.get(ValueLayout.JAVA_BYTE, 0));
        assertEquals(1, dma.activeMappings());
        api.unmapSingle(d, 512, DmaDirection.TO_DEVICE);
        assertThrows(ErrnoException.class, () -> api.unmapSingle(d, 512, DmaDirection.TO_DEVICE));
        assertEquals(1, debug.reports(Kind.DOUBLE_UNMAP).size());
        assertFalse(tracer.select(ev -> ev.kind() == TraceKind.DMA_DEBUG).isEmpty());
    }

    @Test
    void mappingsLeakedAtUnbindAreReportedWithTheirSiteAndUndone() {
        TestDevice dev = device(IommuDomainType.DMA);
        long pa = page((byte) 1);
        long[] leaked = new long[1];
        Driver leaky = new Driver() {
            @Override
            public String name() {
                return "leaky";
            }

            @Override
            public MatchTable matchTable() {
                return MatchTable.of(MatchEntry.Pci.of(0x1da0, 1));
            }

            @Override
            public BoundDevice probe(Device device, MatchEntry match) {
                leaked[0] = device.dma().mapSingle(pa, 4096, DmaDirection.BIDIRECTIONAL);
                device.dma().allocCoherent(8192);
                return () -> { };
            }
        };
        long framesBefore = mem.allocatedFrames();
        core.registerDriver(leaky);
        assertEquals(2, dma.activeMappings(dev));
        core.unregisterDriver(leaky);
        List<DmaDebugReport> leaks = debug.reports(Kind.LEAK_AT_UNBIND);
        assertEquals(2, leaks.size());
        assertTrue(leaks.stream().allMatch(r -> r.describe().contains("probe")), "each leak names where it was mapped");
        assertEquals(0, dma.activeMappings(dev));
        assertEquals(0, iommu.groupOf(dev).orElseThrow().defaultDomain().mappedBytes());
        assertEquals(framesBefore, mem.allocatedFrames(), "the coherent buffer's pages went back");
        assertThrows(DmaFaultException.class, () -> dev.dma().busMaster().readLong(leaked[0]));
    }

    @Test
    void coherentMemoryIsSharedAndItsCpuViewDiesWithIt() {
        TestDevice dev = device(IommuDomainType.DMA);
        DmaApi api = dev.dma();
        CoherentBuffer cb = api.allocCoherent(12_000);
        cb.cpu().set(ValueLayout.JAVA_LONG, 8, 0x1234_5678_9abcL);
        assertEquals(0x1234_5678_9abcL, api.busMaster().readLong(cb.dmaAddress() + 8));
        api.busMaster().writeLong(cb.dmaAddress() + 11_992, -2L);
        assertEquals(-2L, cb.cpu().get(ValueLayout.JAVA_LONG_UNALIGNED, 11_992));
        assertEquals(0, api.busMaster().compareAndSwap(cb.dmaAddress() + 16, 0, 99));
        assertEquals(99, api.busMaster().fetchAndAdd(cb.dmaAddress() + 16, 1));
        assertEquals(100, cb.cpu().get(ValueLayout.JAVA_LONG, 16));
        assertThrows(DmaFaultException.class, () -> api.busMaster().fetchAndAdd(cb.dmaAddress() + 4, 1));
        api.freeCoherent(cb);
        assertThrows(IllegalStateException.class, () -> cb.cpu().get(ValueLayout.JAVA_LONG, 8));
        assertThrows(ErrnoException.class, () -> api.freeCoherent(cb));
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> api.allocCoherent(0)).errno());
    }

    @Test
    void passThroughUsesPhysicalAddressesAndDmaDebugChecksAccesses() {
        TestDevice dev = device(IommuDomainType.IDENTITY);
        DmaApi api = dev.dma();
        long pa = page((byte) 9);
        long d = api.mapSingle(pa, 4096, DmaDirection.TO_DEVICE);
        assertEquals(pa, d);
        assertEquals(9, api.busMaster().readLong(d) & 0xff);
        assertThrows(DmaFaultException.class, () -> api.busMaster().writeLong(d, 1));
        assertEquals(1, debug.reports(Kind.ACCESS_READ_ONLY).size());
        assertThrows(DmaFaultException.class, () -> api.busMaster().readLong(d + 4096));
        assertEquals(1, debug.reports(Kind.ACCESS_UNMAPPED).size());
        api.unmapSingle(d, 4096, DmaDirection.TO_DEVICE);
        assertThrows(DmaFaultException.class, () -> api.busMaster().readLong(d));
    }

    /**
     * {@code check_sync} (kernel/dma/debug.c): a {@code DMA_BIDIRECTIONAL} mapping may be synced either way, for the
     * CPU and for the device; other mappings keep the direction rules, and a sync without a direction is refused.
     */
    @Test
    void bidirectionalMappingsAreExemptFromSyncDirectionChecks() {
        TestDevice dev = device(IommuDomainType.DMA);
        DmaApi api = dev.dma();
        long d = api.mapSingle(page((byte) 1), 4096, DmaDirection.BIDIRECTIONAL);
        api.syncSingleForCpu(d, 4096, DmaDirection.FROM_DEVICE);
        api.syncSingleForDevice(d, 4096, DmaDirection.TO_DEVICE);
        api.syncSingleForCpu(d, 4096, DmaDirection.TO_DEVICE);
        long[] pages = {page((byte) 2), page((byte) 3)};
        MappedSg sg = api.mapSg(SgTable.fromPages(pages, HostMemory.PAGE_SIZE, 0, 2 * HostMemory.PAGE_SIZE),
                DmaDirection.BIDIRECTIONAL);
        api.syncSgForCpu(sg, DmaDirection.FROM_DEVICE);
        api.syncSgForDevice(sg, DmaDirection.TO_DEVICE);
        assertTrue(debug.reports(Kind.DIRECTION_MISMATCH).isEmpty() && debug.reports(Kind.BAD_DIRECTION).isEmpty(),
                "no finding for syncs of bidirectional mappings");

        long t = api.mapSingle(page((byte) 4), 4096, DmaDirection.TO_DEVICE);
        assertThrows(ErrnoException.class, () -> api.syncSingleForDevice(t, 4096, DmaDirection.FROM_DEVICE));
        assertEquals(1, debug.reports(Kind.DIRECTION_MISMATCH).size(), "other mappings keep their direction");
        assertThrows(ErrnoException.class, () -> api.syncSingleForCpu(d, 4096, DmaDirection.NONE));
        assertEquals(1, debug.reports(Kind.BAD_DIRECTION).size(), "a sync needs a direction");
        api.unmapSg(sg, DmaDirection.BIDIRECTIONAL);
        api.unmapSingle(d, 4096, DmaDirection.BIDIRECTIONAL);
        api.unmapSingle(t, 4096, DmaDirection.TO_DEVICE);
    }

    /**
     * {@code check_sg_segment} (kernel/dma/debug.c): a mapped segment longer than {@code max_segment_size}, or
     * crossing {@code dma_set_seg_boundary}'s boundary, is reported; {@code iommu_dma_map_sg} itself merges no
     * segment across the boundary.
     */
    @Test
    void sgSegmentsRespectTheBoundaryAndTooLongOnesAreReported() {
        TestDevice dev = device(IommuDomainType.DMA);
        DmaApi api = dev.dma();
        api.setMaxSegmentSize(1L << 20);
        api.setSegmentBoundary(0x3FFF);
        long[] pages = new long[8];
        for (int i = 0; i < pages.length; i++) {
            pages[i] = page((byte) i);
            page((byte) -1); // a gap, so each page is an sg entry of its own
        }
        MappedSg merged = api.mapSg(SgTable.fromPages(pages, HostMemory.PAGE_SIZE, 0, 8 * HostMemory.PAGE_SIZE),
                DmaDirection.TO_DEVICE);
        for (DmaSegment seg : merged.segments()) {
            long end = seg.dmaAddress() + seg.length() - 1;
            assertEquals(0, (seg.dmaAddress() ^ end) & ~0x3FFFL, "no merged segment crosses a 16 KiB boundary: " + seg);
        }
        assertTrue(merged.segments().size() >= 2, "8 pages cannot be one segment under a 16 KiB boundary");
        assertTrue(debug.reports(Kind.SEGMENT_BOUNDARY).isEmpty());
        api.unmapSg(merged, DmaDirection.TO_DEVICE);

        long contiguous = mem.allocPages(3) << HostMemory.PAGE_SHIFT;
        MappedSg across = api.mapSg(SgTable.fromPages(new long[]{contiguous}, 8 * HostMemory.PAGE_SIZE, 0,
                8 * HostMemory.PAGE_SIZE), DmaDirection.TO_DEVICE);
        assertEquals(1, debug.reports(Kind.SEGMENT_BOUNDARY).size(), "a 32 KiB entry the driver built crosses it");
        api.unmapSg(across, DmaDirection.TO_DEVICE);

        api.setSegmentBoundary(-1L);
        api.setMaxSegmentSize(HostMemory.PAGE_SIZE);
        long big = mem.allocPages(1) << HostMemory.PAGE_SHIFT;
        MappedSg tooLong = api.mapSg(SgTable.fromPages(new long[]{big}, 2 * HostMemory.PAGE_SIZE, 0,
                2 * HostMemory.PAGE_SIZE), DmaDirection.TO_DEVICE);
        assertEquals(1, debug.reports(Kind.SEGMENT_TOO_LONG).size(), "an 8 KiB entry for a 4 KiB max_segment_size");
        assertTrue(debug.reports(Kind.SEGMENT_TOO_LONG).getFirst().message().contains("[len=8192] [max=4096]"),
                debug.reports(Kind.SEGMENT_TOO_LONG).getFirst().message());
        api.unmapSg(tooLong, DmaDirection.TO_DEVICE);

        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> api.setSegmentBoundary(0x1000)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> api.setSegmentBoundary(0x7FF)).errno());
        assertEquals(-1L, api.segmentBoundary(), "a refused mask changes nothing");
    }

    @Test
    void swiotlbBouncesBeyondTheMaskAndSyncMovesTheBytes() {
        TestDevice dev = device(IommuDomainType.IDENTITY);
        DmaApi api = dev.dma();
        long high = 6L << 30; // above the 32-bit mask
        mem.slice(high, 4096).fill((byte) 0x42);
        long d = api.mapSingle(high, 4096, DmaDirection.BIDIRECTIONAL);
        assertTrue(d < 1L << 32, "bounced below the mask");
        assertEquals(swiotlb.base(), d);
        assertEquals(0x42, api.busMaster().readLong(d) & 0xff, "the bounce copy was filled at map time");
        api.busMaster().writeLong(d, 0x0101_0101_0101_0101L);
        assertEquals(0x42, mem.slice(high, 1).get(ValueLayout.JAVA_BYTE, 0), "CPU sees the original until sync");
        api.syncSingleForCpu(d, 4096, DmaDirection.BIDIRECTIONAL);
        assertEquals(1, mem.slice(high, 1).get(ValueLayout.JAVA_BYTE, 0));
        mem.slice(high + 8, 1).set(ValueLayout.JAVA_BYTE, 0, (byte) 7);
        assertEquals(0x42, api.busMaster().readLong(d + 8) & 0xff, "device sees the bounce copy until sync");
        api.syncSingleForDevice(d, 4096, DmaDirection.BIDIRECTIONAL);
        assertEquals(7, api.busMaster().readLong(d + 8) & 0xff);
        api.unmapSingle(d, 4096, DmaDirection.BIDIRECTIONAL);
        assertEquals(0, swiotlb.usedSlots());

        api.setDmaMask(-1L);
        assertEquals(high, api.mapSingle(high, 4096, DmaDirection.TO_DEVICE), "a 64-bit device needs no bounce");
        assertEquals(Errno.EIO, assertThrows(ErrnoException.class, () -> api.setDmaMask(0xFF_FFFFL)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> api.setDmaMask(0x1234L)).errno());
    }

    @Test
    void noDmaWithoutBusMasteringOrAfterUnplug() {
        TestDevice dev = device(IommuDomainType.DMA);
        DmaApi api = dev.dma();
        long d = api.mapSingle(page((byte) 3), 4096, DmaDirection.TO_DEVICE);
        dev.setBusMaster(false);
        DmaFaultException f = assertThrows(DmaFaultException.class, () -> api.busMaster().readLong(d));
        assertEquals(FaultReason.BUS_MASTER_DISABLED, f.reason());
        dev.setBusMaster(true);
        assertEquals(3, api.busMaster().readLong(d) & 0xff);
        core.removeDevice(dev);
        dma.detach(dev);
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> api.mapSingle(page((byte) 1), 1, DmaDirection.TO_DEVICE)).errno());
        assertThrows(DmaFaultException.class, () -> api.busMaster().readLong(d));
        assertEquals(0, dma.activeMappings());
    }

    @Test
    void userOwnedGroupRefusesTheDmaApi() {
        TestDevice dev = device(IommuDomainType.DMA);
        IommuGroup g = iommu.groupOf(dev).orElseThrow();
        Object vfio = new Object();
        g.claimDmaOwner(vfio);
        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class,
                () -> dev.dma().mapSingle(page((byte) 1), 64, DmaDirection.TO_DEVICE)).errno());
        assertThrows(DmaFaultException.class, () -> dev.dma().busMaster().readLong(4096), "blocked domain");
        g.releaseDmaOwner(vfio);
        dev.dma().unmapSingle(dev.dma().mapSingle(page((byte) 1), 64, DmaDirection.TO_DEVICE), 64, DmaDirection.TO_DEVICE);
    }

    /**
     * A revoked sg mapping (the support a dma-buf exporter needs when the backing moves under an importer): the
     * device faults and dma-debug names the revocation, the IOVA is not reused before the owner unmaps, and that
     * unmap is no double unmap.
     */
    @Test
    void revokedSgMappingFaultsKeepsItsIovaAndUnmapsOnce() {
        TestDevice dev = device(IommuDomainType.DMA);
        DmaApi api = dev.dma();
        long[] pages = {page((byte) 5), page((byte) 6)};
        SgTable table = SgTable.fromPages(pages, HostMemory.PAGE_SIZE, 0, 2 * HostMemory.PAGE_SIZE);
        MappedSg m = api.mapSg(table, DmaDirection.BIDIRECTIONAL);
        long iova = m.segments().getFirst().dmaAddress();
        assertEquals(5, api.busMaster().readLong(iova) & 0xff);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> api.revokeSg(m, DmaDirection.TO_DEVICE, "x")).errno(), "direction must match");
        assertEquals(5, api.busMaster().readLong(iova) & 0xff, "a refused revoke changes nothing");

        api.revokeSg(m, DmaDirection.BIDIRECTIONAL, "dma-buf moved");
        DmaFaultException f = assertThrows(DmaFaultException.class, () -> api.busMaster().readLong(iova + 4096));
        assertEquals(FaultReason.NOT_MAPPED, f.reason());
        List<DmaDebugReport> r = debug.reports(Kind.ACCESS_REVOKED);
        assertEquals(1, r.size());
        assertTrue(r.getFirst().message().contains("dma-buf moved"), r.getFirst().message());
        assertFalse(r.getFirst().mapSite().isEmpty(), "the report names where the mapping was made");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> api.revokeSg(m, DmaDirection.BIDIRECTIONAL, "again")).errno());

        MappedSg other = api.mapSg(table, DmaDirection.BIDIRECTIONAL);
        assertNotEquals(iova, other.segments().getFirst().dmaAddress(), "the revoked IOVA is still reserved");
        assertEquals(2, dma.activeMappings());
        api.unmapSg(m, DmaDirection.BIDIRECTIONAL);
        api.unmapSg(other, DmaDirection.BIDIRECTIONAL);
        assertEquals(0, dma.activeMappings());
        assertEquals(0, iommu.groupOf(dev).orElseThrow().defaultDomain().mappedBytes());
        assertThrows(ErrnoException.class, () -> api.unmapSg(m, DmaDirection.BIDIRECTIONAL));
        assertEquals(Kind.DOUBLE_UNMAP, debug.reports().getLast().kind());
    }

    @Test
    void revokedPassThroughMappingIsCaughtByDmaDebug() {
        TestDevice dev = device(IommuDomainType.IDENTITY);
        DmaApi api = dev.dma();
        long pa = page((byte) 3);
        MappedSg m = api.mapSg(SgTable.fromPages(new long[]{pa}, HostMemory.PAGE_SIZE, 0, 4096), DmaDirection.TO_DEVICE);
        assertEquals(3, api.busMaster().readLong(pa) & 0xff);
        api.revokeSg(m, DmaDirection.TO_DEVICE, "revoked by exporter");
        DmaFaultException f = assertThrows(DmaFaultException.class, () -> api.busMaster().readLong(pa));
        assertEquals(FaultReason.DEBUG_UNMAPPED, f.reason());
        assertEquals(1, debug.reports(Kind.ACCESS_REVOKED).size());
        api.unmapSg(m, DmaDirection.TO_DEVICE);
        assertEquals(0, dma.activeMappings());
    }
}
