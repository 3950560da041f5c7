package dev.dmaplane.machine;

import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.dma.FaultReason;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRoute;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.testing.TestMachines;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Device requests on the machine's fabric. A request a PCIe switch routes to a peer's BAR never reaches the root
 * complex, so the IOMMU neither translates nor checks it (PCIe Base Spec address routing;
 * Documentation/driver-api/pci/p2pdma.rst); everything else is translated by the requester's domain. Device memory
 * is mapped for a device with dma_map_resource (Documentation/core-api/dma-api.rst; kernel/dma/mapping.c,
 * iommu_dma_map_resource in drivers/iommu/dma-iommu.c, dma_direct_map_resource in kernel/dma/direct.c), tracked by
 * dma-debug as kernel/dma/debug.c tracks dma_debug_resource entries. Real bytes are checked through the BAR.
 */
class PeerRoutingTest {
    private final List<Machine> machines = new ArrayList<>();

    @AfterEach
    void close() {
        machines.forEach(Machine::close);
    }

    private Machine boot(String text) {
        Machine m = Machine.boot(TopologyLoader.load(text, TopologyLoader.Format.YAML), Machine.Options.DEFAULT);
        machines.add(m);
        return m;
    }

    private Machine bootDefault() {
        return boot(TestMachines.text(TestMachines.DEFAULT_COPYENGINE));
    }

    /** {@code fn} may master the bus with 64-bit addresses, as a driver's probe sets it up. */
    private static BusMaster master(PciFunction fn) {
        fn.setMaster(true);
        fn.dma().setDmaMask(-1L);
        return fn.dma().busMaster();
    }

    private static byte[] pattern(int n, int seed) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (i * 131 + seed);
        }
        return b;
    }

    private static byte[] readBar(Bar bar, long offset, int n) {
        byte[] out = new byte[n];
        bar.memory().read(offset, MemorySegment.ofArray(out));
        return out;
    }

    @Test
    void theSwitchCarriesAnHcaWriteIntoGpuVramWithoutTheIommu() {
        Machine m = bootDefault();
        PciFunction hca = m.pci().function("04:00.0");
        Bar vram = m.pci().function("03:00.0").bar(2).orElseThrow();
        long offset = (3L << 20) - 1000; // crosses a 2 MiB chunk of device memory
        byte[] data = pattern(64 * 1024, 7);

        BusMaster dev = master(hca);
        dev.write(vram.address() + offset, MemorySegment.ofArray(data));

        assertArrayEquals(data, readBar(vram, offset, data.length), "the bytes landed in VRAM");
        byte[] back = new byte[data.length];
        dev.read(vram.address() + offset, MemorySegment.ofArray(back));
        assertArrayEquals(data, back, "and a peer read brings them back");
        assertEquals(0, dev.fetchAndAdd(vram.address() + (8L << 20), 5), "AtomicOps route peer-to-peer too");
        assertEquals(5, dev.readLong(vram.address() + (8L << 20)));

        assertEquals(0, m.iommu().groupOf(hca).orElseThrow().domain().mappedBytes(), "nothing is mapped for the HCA");
        assertEquals(0, m.activeDmaMappings());
        assertEquals(List.of(), m.iommu().faults(), "the IOMMU never saw the requests");
        assertTrue(m.tracer().select(e -> e.kind() == TraceKind.FAULT).isEmpty());
    }

    @Test
    void theSameBusAddressFromAnotherRootPortIsTranslatedAndFaults() {
        Machine m = bootDefault();
        PciFunction hca2 = m.pci().function("05:00.0");
        Bar vram = m.pci().function("03:00.0").bar(2).orElseThrow();
        long addr = vram.address() + 4096;

        DmaFaultException e = assertThrows(DmaFaultException.class,
                () -> master(hca2).write(addr, MemorySegment.ofArray(pattern(256, 1))));
        assertEquals(FaultReason.NOT_MAPPED, e.reason());
        assertEquals(addr, m.iommu().faults().getLast().iova());
        assertEquals("0000:05:00.0", m.iommu().faults().getLast().device());
        assertArrayEquals(new byte[256], readBar(vram, 4096, 256), "no byte moved");
    }

    @Test
    void peerRequestsStillNeedBusMasteringAndAnAddressTheDeviceDrives() {
        Machine m = bootDefault();
        PciFunction hca = m.pci().function("04:00.0");
        long vram = m.pci().function("03:00.0").bar(2).orElseThrow().address();
        MemorySegment one = MemorySegment.ofArray(new byte[8]);

        assertEquals(FaultReason.BUS_MASTER_DISABLED,
                assertThrows(DmaFaultException.class, () -> hca.dma().busMaster().write(vram, one)).reason());
        hca.setMaster(true);
        m.pci().setDmaAddressBits(hca, 32);
        assertEquals(FaultReason.OUT_OF_RANGE,
                assertThrows(DmaFaultException.class, () -> hca.dma().busMaster().write(vram, one)).reason(),
                "VRAM sits at 1 TiB, beyond what a 32-bit device drives");
    }

    /**
     * The command register governs decoding and forwarding (PCI Local Bus Spec: Memory Space Enable, Bus Master
     * Enable; PCI-to-PCI Bridge Architecture for a bridge's): firmware leaves them on where it assigned BARs and on
     * bridges; a target with Memory Space Enable clear decodes nothing, a bridge with it clear forwards nothing down
     * into its windows, a bridge with Bus Master Enable clear forwards nothing up from below, and a register BAR of
     * a function that does not decode reads all-ones and drops writes.
     */
    @Test
    void theCommandRegisterGovernsDecodingAndForwarding() {
        Machine m = bootDefault();
        PciFunction gpu = m.pci().function("03:00.0");
        PciFunction hca = m.pci().function("04:00.0");
        PciFunction above = hca.upstreamBridge().orElseThrow();
        Bar vram = gpu.bar(2).orElseThrow();
        assertTrue(gpu.configSpace().memorySpaceEnabled(), "firmware enabled decoding of the assigned BARs");
        assertTrue(above.configSpace().memorySpaceEnabled() && above.busMasterEnabled(), "and forwarding on bridges");
        BusMaster dev = master(hca);
        MemorySegment data = MemorySegment.ofArray(pattern(64, 3));

        gpu.setMemorySpace(false);
        DmaFaultException off = assertThrows(DmaFaultException.class, () -> dev.write(vram.address() + 4096, data));
        assertEquals(FaultReason.UNSUPPORTED_REQUEST, off.reason(), off.getMessage());
        assertArrayEquals(new byte[64], readBar(vram, 4096, 64), "no byte moved");
        gpu.setMemorySpace(true);
        dev.write(vram.address() + 4096, data);
        assertArrayEquals(pattern(64, 3), readBar(vram, 4096, 64));

        PciFunction gpuPort = gpu.upstreamBridge().orElseThrow();
        gpuPort.setMemorySpace(false); // the switch port above the GPU stops forwarding down into its windows
        DmaFaultException down = assertThrows(DmaFaultException.class, () -> dev.write(vram.address() + 8192, data),
                "not forwarded down");
        assertEquals(FaultReason.UNSUPPORTED_REQUEST, down.reason(), down.getMessage());
        above.setMemorySpace(false); // the HCA's own port: its Memory Space Enable gates only what goes down
        gpuPort.setMemorySpace(true);
        dev.write(vram.address() + 8192, data);
        above.setMemorySpace(true);

        long page = m.memory().allocPages(0) * HostMemory.PAGE_SIZE;
        long iova = hca.dma().mapSingle(page, 4096, DmaDirection.FROM_DEVICE);
        dev.write(iova, data);
        above.setMaster(false); // nor up from below: not even to RAM through the IOMMU
        DmaFaultException up = assertThrows(DmaFaultException.class, () -> dev.write(iova, data));
        assertEquals(FaultReason.UNSUPPORTED_REQUEST, up.reason());
        assertTrue(up.getMessage().contains("Bus Master Enable is clear"), up.getMessage());
        above.setMaster(true);
        dev.write(iova, data);
        hca.dma().unmapSingle(iova, 4096, DmaDirection.FROM_DEVICE);

        Bar.Mmio regs = gpu.bar(0).orElseThrow().mmio();
        long before = regs.read(0, 4);
        gpu.setMemorySpace(false);
        assertEquals(0xFFFF_FFFFL, regs.read(0, 4), "a master abort reads all-ones");
        gpu.setMemorySpace(true);
        assertEquals(before, regs.read(0, 4));
    }

    @Test
    void requestsTheFabricCannotCompleteAreUnsupportedRequests() {
        String text = TestMachines.text(TestMachines.DEFAULT_COPYENGINE)
                .replace("                  device: \"0x1002\"\n                  class: \"0x060400\"\n",
                        "                  device: \"0x1002\"\n                  class: \"0x060400\"\n                  acs: [SV, RR, CR, UF]\n")
                .replaceFirst("          acs: \\[SV, RR, CR, UF]\n", "          acs: [SV, RR, CR]\n");
        Machine m = boot(text);
        PciFunction hca = m.pci().function("04:00.0");
        long vram = m.pci().function("03:00.0").bar(2).orElseThrow().address();
        DmaFaultException e = assertThrows(DmaFaultException.class,
                () -> master(hca).write(vram, MemorySegment.ofArray(new byte[8])));
        assertEquals(FaultReason.UNSUPPORTED_REQUEST, e.reason());
        assertTrue(e.getMessage().contains("no ACS Upstream Forwarding"), e.getMessage());
        assertFalse(m.tracer().select(ev -> ev.kind() == TraceKind.FAULT && ev.device().equals("0000:04:00.0")).isEmpty());

        Machine d = bootDefault();
        PciFunction hcaD = d.pci().function("04:00.0");
        long regs = d.pci().function("03:00.0").bar(0).orElseThrow().address();
        DmaFaultException r = assertThrows(DmaFaultException.class, () -> master(hcaD).write(regs, MemorySegment.ofArray(new byte[8])));
        assertEquals(FaultReason.UNSUPPORTED_REQUEST, r.reason());
        assertTrue(r.getMessage().contains("register block"), r.getMessage());
    }

    @Test
    void noIovaAliasesAnAddressASwitchWouldClaim() {
        String bar32 = TestMachines.text(TestMachines.DEFAULT_COPYENGINE).replace("                        - { index: 0, size: 16MiB, kind: mmio }\n",
                "                        - { index: 0, size: 16MiB, kind: mmio, bits: 32, prefetchable: false }\n");
        Machine m = boot(bar32);
        PciFunction hca = m.pci().function("04:00.0");
        Bar regs = m.pci().function("03:00.0").bar(0).orElseThrow();
        assertTrue(regs.address() >= 0xC000_0000L && regs.address() < 1L << 32, "GPU registers now sit below 4 GiB");
        hca.dma().setDmaMask(-1L);
        long big = 256L << 20;
        List<Long> iovas = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            iovas.add(hca.dma().mapSingle(i * big, big, DmaDirection.TO_DEVICE));
        }
        for (long iova : iovas) {
            assertFalse(iova < regs.address() + regs.size() && regs.address() < iova + big,
                    "IOVA 0x" + Long.toHexString(iova) + " would alias the GPU's registers");
            assertInstanceOf(PciRoute.RootComplex.class, m.pci().route(hca, iova), "it reaches the IOMMU");
        }
        assertTrue(iovas.stream().anyMatch(v -> v < 0xC000_0000L), "32-bit IOVA continues below the reserved window");
        for (long iova : iovas) {
            hca.dma().unmapSingle(iova, big, DmaDirection.TO_DEVICE);
        }
    }

    @Test
    void mapResourceGivesAPeerAcrossTheRootComplexAnIova() {
        Machine m = bootDefault();
        PciFunction hca2 = m.pci().function("05:00.0");
        Bar vram = m.pci().function("03:00.0").bar(2).orElseThrow();
        long phys = vram.address() + (1L << 20) + 256;
        BusMaster dev = master(hca2);

        long iova = hca2.dma().mapResource(phys, 64 * 1024, DmaDirection.BIDIRECTIONAL);
        assertNotEquals(phys, iova);
        assertEquals(phys & 0xFFF, iova & 0xFFF, "the offset in the page survives");
        assertEquals(1, m.activeDmaMappings(hca2));
        byte[] data = pattern(64 * 1024, 3);
        dev.write(iova, MemorySegment.ofArray(data));
        assertArrayEquals(data, readBar(vram, (1L << 20) + 256, data.length), "through the IOMMU and the root complex into VRAM");
        assertEquals(FaultReason.NOT_MAPPED,
                assertThrows(DmaFaultException.class, () -> dev.write(phys, MemorySegment.ofArray(new byte[8]))).reason(),
                "the raw bus address means nothing to this device's domain");

        hca2.dma().unmapResource(iova, 64 * 1024, DmaDirection.BIDIRECTIONAL);
        assertEquals(0, m.activeDmaMappings(hca2));
        assertEquals(FaultReason.NOT_MAPPED,
                assertThrows(DmaFaultException.class, () -> dev.read(iova, MemorySegment.ofArray(new byte[8]))).reason());
        assertTrue(m.tracer().select(e -> e.kind() == TraceKind.MAP && e.detail().startsWith("resource")).size() == 1);
    }

    @Test
    void mapResourceIsCheckedAndTrackedByDmaDebug() {
        Machine m = bootDefault();
        PciFunction hca2 = m.pci().function("05:00.0");
        hca2.dma().setDmaMask(-1L);
        PciFunction gpu = m.pci().function("03:00.0");
        long vram = gpu.bar(2).orElseThrow().address();
        DmaDirection rw = DmaDirection.BIDIRECTIONAL;

        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> hca2.dma().mapResource(1L << 20, 4096, rw)).errno(),
                "RAM is mapped with mapSingle");
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                () -> hca2.dma().mapResource(gpu.bar(0).orElseThrow().address(), 4096, rw)).errno(), "a register BAR is not device memory");
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                () -> hca2.dma().mapResource(vram + (16L << 30) - 4096, 8192, rw)).errno(), "runs past the BAR");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> hca2.dma().mapResource(vram, 0, rw)).errno());
        assertEquals(0, m.activeDmaMappings());

        long iova = hca2.dma().mapResource(vram, 8192, DmaDirection.TO_DEVICE);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> hca2.dma().unmapResource(iova, 4096, DmaDirection.TO_DEVICE)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> hca2.dma().unmapSingle(iova, 8192, DmaDirection.TO_DEVICE)).errno());
        assertEquals(1, m.dmaDebug().reports(DmaDebugReport.Kind.SIZE_MISMATCH).size());
        assertTrue(m.dmaDebug().reports(DmaDebugReport.Kind.TYPE_MISMATCH).getFirst().message().contains("dma_map_resource"));
        hca2.dma().unmapResource(iova, 8192, DmaDirection.TO_DEVICE);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> hca2.dma().unmapResource(iova, 8192, DmaDirection.TO_DEVICE)).errno());
        assertEquals(1, m.dmaDebug().reports(DmaDebugReport.Kind.DOUBLE_UNMAP).size());

        hca2.dma().mapResource(vram, 4096, rw);
        m.hotUnplug(hca2);
        DmaDebugReport leak = m.dmaDebug().reports(DmaDebugReport.Kind.LEAK_AT_UNBIND).getLast();
        assertTrue(leak.message().contains("dma_map_resource"), leak.message());
        assertEquals(0, m.activeDmaMappings());
    }

    @Test
    void inPassThroughMapResourceHandsOutThePhysicalAddress() {
        Machine m = boot(TestMachines.text(TestMachines.DEFAULT_COPYENGINE).replace("defaultDomain: dma", "defaultDomain: identity"));
        PciFunction hca2 = m.pci().function("05:00.0");
        Bar vram = m.pci().function("03:00.0").bar(2).orElseThrow();
        assertEquals(Errno.EIO, assertThrows(ErrnoException.class,
                () -> hca2.dma().mapResource(vram.address(), 4096, DmaDirection.FROM_DEVICE)).errno(), "1 TiB is beyond 32 bits: never bounced");

        BusMaster dev = master(hca2);
        assertEquals(FaultReason.DEBUG_UNMAPPED,
                assertThrows(DmaFaultException.class, () -> dev.write(vram.address(), MemorySegment.ofArray(new byte[8]))).reason(),
                "dma-debug catches an unmapped pass-through access");
        long bus = hca2.dma().mapResource(vram.address(), 4096, DmaDirection.FROM_DEVICE);
        assertEquals(vram.address(), bus);
        byte[] data = pattern(4096, 9);
        dev.write(bus, MemorySegment.ofArray(data));
        assertArrayEquals(data, readBar(vram, 0, 4096));
        hca2.dma().unmapResource(bus, 4096, DmaDirection.FROM_DEVICE);
    }

    /**
     * A peer bus-address window (the BUS_ADDR branch of dma_map_sg, pci_p2pdma_bus_addr_map): nothing is mapped, the
     * switch carries the bytes, and dma-debug, which the IOMMU cannot stand in for on this path, refuses and reports
     * every access through the window once it was revoked or unmapped, naming the site that made it.
     */
    @Test
    void aPeerWindowIsTrackedAndDmaDebugCatchesItsStaleUse() {
        Machine m = bootDefault();
        PciFunction hca = m.pci().function("04:00.0");
        Bar vram = m.pci().function("03:00.0").bar(2).orElseThrow();
        BusMaster dev = master(hca);
        long bus = vram.address() + (2L << 20);

        assertEquals(bus, hca.dma().mapPeer(bus, 64 * 1024, DmaDirection.BIDIRECTIONAL));
        assertEquals(1, m.activeDmaMappings(hca), "tracked like any mapping");
        assertEquals(0, m.iommu().groupOf(hca).orElseThrow().domain().mappedBytes(), "but nothing is in the IOMMU");
        byte[] data = pattern(64 * 1024, 4);
        dev.write(bus, MemorySegment.ofArray(data));
        assertArrayEquals(data, readBar(vram, 2L << 20, data.length));
        dev.write(vram.address(), MemorySegment.ofArray(new byte[8]));
        assertTrue(m.dmaDebug().reports().isEmpty(), "peer addresses never handed out are not checked, as before");

        assertEquals(FaultReason.DEBUG_UNMAPPED, assertThrows(DmaFaultException.class,
                () -> dev.read(bus + 60 * 1024, MemorySegment.ofArray(new byte[8 * 1024]))).reason(), "runs past the window");
        assertEquals(DmaDebugReport.Kind.ACCESS_UNMAPPED, m.dmaDebug().reports().getLast().kind());

        hca.dma().revokePeer(bus, 64 * 1024, DmaDirection.BIDIRECTIONAL, "dma-buf 7 moved to system memory");
        DmaFaultException f = assertThrows(DmaFaultException.class, () -> dev.write(bus + 4096, MemorySegment.ofArray(pattern(256, 9))));
        assertEquals(FaultReason.DEBUG_UNMAPPED, f.reason());
        DmaDebugReport r = m.dmaDebug().reports().getLast();
        assertEquals(DmaDebugReport.Kind.ACCESS_REVOKED, r.kind());
        assertTrue(r.message().contains("dma-buf 7 moved"), r.message());
        assertFalse(r.mapSite().isEmpty(), "the report names where the window was made");
        assertArrayEquals(Arrays.copyOfRange(data, 4096, 4096 + 256), readBar(vram, (2L << 20) + 4096, 256), "no byte moved");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> hca.dma().revokePeer(bus, 64 * 1024, DmaDirection.BIDIRECTIONAL, "again")).errno());
        assertEquals(List.of(), m.iommu().faults(), "the IOMMU never saw any of it");

        hca.dma().unmapPeer(bus, 64 * 1024, DmaDirection.BIDIRECTIONAL);
        assertEquals(0, m.activeDmaMappings(hca));
        assertThrows(DmaFaultException.class, () -> dev.readLong(bus));
        DmaDebugReport u = m.dmaDebug().reports().getLast();
        assertEquals(DmaDebugReport.Kind.ACCESS_UNMAPPED, u.kind());
        assertTrue(u.message().contains("unmapped"), u.message());
        assertFalse(u.mapSite().isEmpty());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> hca.dma().unmapPeer(bus, 64 * 1024, DmaDirection.BIDIRECTIONAL)).errno());
        assertEquals(DmaDebugReport.Kind.DOUBLE_UNMAP, m.dmaDebug().reports().getLast().kind());

        long again = hca.dma().mapPeer(bus, 4096, DmaDirection.TO_DEVICE);
        assertEquals(data[0], (byte) dev.readLong(again), "a new window over the same bytes is usable");
        assertEquals(FaultReason.DEBUG_READ_ONLY, assertThrows(DmaFaultException.class, () -> dev.writeLong(again, 1)).reason());
        assertEquals(DmaDebugReport.Kind.ACCESS_READ_ONLY, m.dmaDebug().reports().getLast().kind());
        m.hotUnplug(hca);
        DmaDebugReport leak = m.dmaDebug().reports(DmaDebugReport.Kind.LEAK_AT_UNBIND).getLast();
        assertTrue(leak.message().contains("pci_p2pdma_bus_addr_map"), leak.message());
    }

    @Test
    void aPeerWindowNeedsARouteThroughTheSwitch() {
        Machine m = bootDefault();
        PciFunction hca = m.pci().function("04:00.0");
        PciFunction hca2 = m.pci().function("05:00.0");
        hca.dma().setDmaMask(-1L);
        hca2.dma().setDmaMask(-1L);
        PciFunction gpu = m.pci().function("03:00.0");
        long vram = gpu.bar(2).orElseThrow().address();
        DmaDirection rw = DmaDirection.BIDIRECTIONAL;

        ErrnoException up = assertThrows(ErrnoException.class, () -> hca2.dma().mapPeer(vram, 4096, rw));
        assertEquals(Errno.EINVAL, up.errno());
        assertTrue(up.getMessage().contains("dma_map_resource"), up.getMessage());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> hca.dma().mapPeer(1L << 20, 4096, rw)).errno(), "host RAM");
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                () -> hca.dma().mapPeer(vram + (16L << 30) - 4096, 8192, rw)).errno(), "runs past the BAR");
        assertEquals(Errno.EFAULT, assertThrows(ErrnoException.class,
                () -> hca.dma().mapPeer(gpu.bar(0).orElseThrow().address(), 4096, rw)).errno(), "registers are not device memory");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> hca.dma().mapPeer(vram, 4096, DmaDirection.NONE)).errno());
        assertEquals(0, m.activeDmaMappings());
        hca.dma().setDmaMask(0xFFFF_FFFFL);
        long bus = hca.dma().mapPeer(vram, 4096, rw);
        hca.setMaster(true);
        hca.dma().busMaster().readLong(bus); // as dma_map_sg, the mask is not checked for a bus address
        m.pci().setDmaAddressBits(hca, 32);
        assertEquals(FaultReason.OUT_OF_RANGE, assertThrows(DmaFaultException.class, () -> hca.dma().busMaster().readLong(bus)).reason(),
                "a device that drives 32 address bits cannot reach 1 TiB");
        hca.dma().unmapPeer(bus, 4096, rw);
    }

    /** With dma-debug off nothing stands between a device and a stale peer address, as on real hardware. */
    @Test
    void withoutDmaDebugAStalePeerWindowStillReachesThePeer() {
        Machine m = Machine.boot(TopologyLoader.load(TestMachines.text(TestMachines.DEFAULT_COPYENGINE), TopologyLoader.Format.YAML),
                new Machine.Options(false, 4));
        machines.add(m);
        PciFunction hca = m.pci().function("04:00.0");
        Bar vram = m.pci().function("03:00.0").bar(2).orElseThrow();
        BusMaster dev = master(hca);
        long bus = hca.dma().mapPeer(vram.address(), 4096, DmaDirection.BIDIRECTIONAL);
        hca.dma().revokePeer(bus, 4096, DmaDirection.BIDIRECTIONAL, "moved");
        dev.writeLong(bus, 0x1234);
        hca.dma().unmapPeer(bus, 4096, DmaDirection.BIDIRECTIONAL);
        dev.writeLong(bus + 8, 0x5678);
        assertEquals(0x1234, vram.memory().segment(0, 16).get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
        assertEquals(0x5678, vram.memory().segment(0, 16).get(ValueLayout.JAVA_LONG_UNALIGNED, 8));
        assertTrue(m.dmaDebug().reports().isEmpty());
    }

    /** revokeSg for dma_map_resource: the IOVA stays reserved, the access faults and is reported as revoked. */
    @Test
    void aRevokedResourceMappingFaultsAndKeepsItsIova() {
        Machine m = bootDefault();
        PciFunction hca2 = m.pci().function("05:00.0");
        Bar vram = m.pci().function("03:00.0").bar(2).orElseThrow();
        BusMaster dev = master(hca2);
        long iova = hca2.dma().mapResource(vram.address(), 8192, DmaDirection.BIDIRECTIONAL);
        dev.writeLong(iova, 42);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> hca2.dma().revokeResource(iova, 4096, DmaDirection.BIDIRECTIONAL, "x")).errno(), "size must match");
        hca2.dma().revokeResource(iova, 8192, DmaDirection.BIDIRECTIONAL, "dma-buf 3 revoked");
        assertEquals(FaultReason.NOT_MAPPED, assertThrows(DmaFaultException.class, () -> dev.readLong(iova)).reason());
        DmaDebugReport r = m.dmaDebug().reports().getLast();
        assertEquals(DmaDebugReport.Kind.ACCESS_REVOKED, r.kind());
        assertTrue(r.message().contains("dma-buf 3 revoked"), r.message());
        long other = hca2.dma().mapResource(vram.address(), 8192, DmaDirection.BIDIRECTIONAL);
        assertNotEquals(iova, other, "the revoked IOVA is still reserved");
        hca2.dma().unmapResource(iova, 8192, DmaDirection.BIDIRECTIONAL);
        hca2.dma().unmapResource(other, 8192, DmaDirection.BIDIRECTIONAL);
        assertEquals(0, m.activeDmaMappings(hca2));
        assertEquals(0, m.iommu().groupOf(hca2).orElseThrow().domain().mappedBytes());
    }
}
