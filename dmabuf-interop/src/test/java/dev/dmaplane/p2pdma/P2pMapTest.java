package dev.dmaplane.p2pdma;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dma.FaultReason;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Mapping provider memory for a client as the P2P branch of {@code dma_map_sg} does ({@code pci_p2pdma_map_segment}
 * in {@code drivers/pci/p2pdma.c}; {@code dma_direct_map_sg} in {@code kernel/dma/direct.c} and
 * {@code iommu_dma_map_sg} in {@code drivers/iommu/dma-iommu.c}): BUS_ADDR hands out the PCI bus address and maps
 * nothing, THRU_HOST_BRIDGE maps the memory through the client's IOMMU domain, NOT_SUPPORTED fails with
 * {@code -EREMOTEIO}. Then the client's device writes real bytes, which are read back through the provider's BAR.
 */
class P2pMapTest {
    private static final long MIB = 1L << 20;
    private final MachineFiles files = new MachineFiles();

    @AfterEach
    void close() {
        files.close();
    }

    /** A driver's probe: bus mastering on, 64-bit DMA. */
    private static BusMaster master(PciFunction fn) {
        fn.setMaster(true);
        fn.dma().setDmaMask(-1L);
        return fn.dma().busMaster();
    }

    private static byte[] pattern(int n, int seed) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (i * 37 + seed);
        }
        return b;
    }

    private static byte[] cpuRead(P2pAllocation a, int n) {
        byte[] out = new byte[n];
        a.read(0, MemorySegment.ofArray(out));
        return out;
    }

    private static P2pAllocation vramAllocation(P2pDma p2p, Machine m, long size) {
        P2pMemory mem = p2p.addResource(m.pci().function("03:00.0"), 2, 16 * MIB, 0);
        mem.publish(true);
        return mem.alloc(size);
    }

    @Test
    void underOneSwitchTheHcaWritesVramByBusAddressAndTheIommuNeverKnows() {
        Machine m = files.boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction hca = m.pci().function("04:00.0");
        P2pAllocation a = vramAllocation(p2p, m, 64 * 1024);

        P2pMapping map = p2p.mapSg(hca, a, DmaDirection.FROM_DEVICE);
        assertEquals(MapType.BUS_ADDR, map.mapType());
        assertEquals(a.busAddress(), map.dmaAddress(), "the PCI bus address itself");
        assertEquals(List.of(new DmaSegment(a.busAddress(), 64 * 1024)), map.segments());
        assertEquals(1, m.activeDmaMappings(hca), "a peer window the DMA API tracks for dma-debug");
        assertEquals(0, m.iommu().groupOf(hca).orElseThrow().domain().mappedBytes(), "but nothing is in the IOMMU");

        byte[] data = pattern(64 * 1024, 5);
        master(hca).write(map.dmaAddress(), MemorySegment.ofArray(data));
        assertArrayEquals(data, cpuRead(a, data.length), "the bytes are in VRAM");
        assertEquals(List.of(), m.iommu().faults());

        assertEquals(Errno.EBUSY, assertThrows(ErrnoException.class, () -> p2p.memory(a.provider()).orElseThrow().free(a)).errno(),
                "mapped memory cannot be freed");
        p2p.unmapSg(map);
        assertEquals(0, m.activeDmaMappings());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> p2p.unmapSg(map)).errno(), "unmapped twice");
        assertThrows(DmaFaultException.class, () -> hca.dma().busMaster().readLong(map.dmaAddress()),
                "dma-debug refuses a device access through the unmapped bus address");
        p2p.memory(a.provider()).orElseThrow().free(a);
        assertTrue(m.tracer().select(e -> e.kind() == TraceKind.P2PDMA && e.detail().startsWith("map BUS_ADDR")).size() == 1);
    }

    @Test
    void acrossTheRootComplexWithoutTheWhitelistMappingFailsWithEremoteio() {
        Machine m = files.boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction hca2 = m.pci().function("05:00.0");
        P2pAllocation a = vramAllocation(p2p, m, 4096);

        ErrnoException e = assertThrows(ErrnoException.class, () -> p2p.mapSg(hca2, a, DmaDirection.TO_DEVICE));
        assertEquals(Errno.EREMOTEIO, e.errno());
        assertTrue(e.getMessage().contains("not on the P2PDMA whitelist"), e.getMessage());
        assertEquals(0, m.activeDmaMappings());
        p2p.memory(a.provider()).orElseThrow().free(a);
    }

    @Test
    void throughAWhitelistedHostBridgeTheHcaReachesVramOnlyByItsIova() {
        Machine m = files.hostBridgeAllowsP2p().boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction hca2 = m.pci().function("05:00.0");
        P2pAllocation a = vramAllocation(p2p, m, 64 * 1024);
        BusMaster dev = master(hca2);

        P2pMapping map = p2p.mapSg(hca2, a, DmaDirection.BIDIRECTIONAL);
        assertEquals(MapType.THRU_HOST_BRIDGE, map.mapType());
        assertNotEquals(a.busAddress(), map.dmaAddress(), "an IOVA, not the bus address");
        assertEquals(1, m.activeDmaMappings(hca2), "mapped with dma_map_resource");
        byte[] data = pattern(64 * 1024, 11);
        dev.write(map.dmaAddress(), MemorySegment.ofArray(data));
        assertArrayEquals(data, cpuRead(a, data.length));

        DmaFaultException raw = assertThrows(DmaFaultException.class, () -> dev.write(a.busAddress(), MemorySegment.ofArray(new byte[64])));
        assertEquals(FaultReason.NOT_MAPPED, raw.reason(), "the raw bus address goes to the IOMMU, which has no such IOVA");
        assertEquals(a.busAddress(), m.iommu().faults().getLast().iova());

        p2p.unmapSg(map);
        assertEquals(0, m.activeDmaMappings(hca2));
        assertEquals(FaultReason.NOT_MAPPED, assertThrows(DmaFaultException.class,
                () -> dev.read(map.dmaAddress(), MemorySegment.ofArray(new byte[8]))).reason(), "unmapped means gone");
    }

    @Test
    void aClientThatLeftItsBusLeavesNothingMappedBehind() {
        Machine m = files.hostBridgeAllowsP2p().boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction hca2 = m.pci().function("05:00.0");
        P2pAllocation a = vramAllocation(p2p, m, 4096);
        P2pMapping map = p2p.mapSg(hca2, a, DmaDirection.TO_DEVICE);
        m.hotUnplug(hca2);
        assertEquals(0, m.activeDmaMappings(), "the DMA layer reclaimed the IOVA when the HCA went");
        p2p.unmapSg(map);
        p2p.memory(a.provider()).orElseThrow().free(a);
        assertEquals(16 * MIB, p2p.memory(a.provider()).orElseThrow().available());
    }

    @Test
    void acsRedirectOnTheSwitchSendsTheSamePairThroughTheHostBridge() {
        Machine m = files.downstreamPortsAcs("[SV, RR, CR, UF]").boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction hca = m.pci().function("04:00.0");
        P2pAllocation a = vramAllocation(p2p, m, 4096);
        BusMaster dev = master(hca);
        assertEquals(Errno.EREMOTEIO, assertThrows(ErrnoException.class, () -> p2p.mapSg(hca, a, DmaDirection.FROM_DEVICE)).errno());
        assertEquals(FaultReason.NOT_MAPPED, assertThrows(DmaFaultException.class,
                () -> dev.write(a.busAddress(), MemorySegment.ofArray(new byte[64]))).reason(),
                "with RR the switch hands the request to the root complex, whose IOMMU knows no such address");

        Machine w = new MachineFiles().downstreamPortsAcs("[SV, RR, CR, UF]").hostBridgeAllowsP2p().boot();
        try {
            P2pDma p2pW = P2pDma.of(w);
            PciFunction hcaW = w.pci().function("04:00.0");
            P2pAllocation aw = vramAllocation(p2pW, w, 4096);
            P2pMapping map = p2pW.mapSg(hcaW, aw, DmaDirection.FROM_DEVICE);
            assertEquals(MapType.THRU_HOST_BRIDGE, map.mapType());
            byte[] data = pattern(4096, 2);
            master(hcaW).write(map.dmaAddress(), MemorySegment.ofArray(data));
            assertArrayEquals(data, cpuRead(aw, 4096));
            p2pW.unmapSg(map);
        } finally {
            w.close();
        }
    }

    @Test
    void anAuxiliaryClientMapsThroughItsPciParent() {
        Machine m = files.boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction hca = m.pci().function("04:00.0");
        Device rdma = m.devices().addAuxDevice(hca, "hca", "rdma", 0, null);
        P2pAllocation a = vramAllocation(p2p, m, 8192);
        P2pMapping map = p2p.mapSg(rdma, a, DmaDirection.TO_DEVICE);
        assertEquals(MapType.BUS_ADDR, map.mapType());
        a.write(0, MemorySegment.ofArray(pattern(8192, 4)));
        byte[] got = new byte[8192];
        master(hca).read(map.dmaAddress(), MemorySegment.ofArray(got));
        assertArrayEquals(pattern(8192, 4), got, "the HCA reads VRAM peer-to-peer");
        p2p.unmapSg(map);
    }

    @Test
    void mappingChecksItsArguments() {
        Machine m = files.boot();
        P2pDma p2p = P2pDma.of(m);
        PciFunction hca = m.pci().function("04:00.0");
        P2pAllocation a = vramAllocation(p2p, m, 4096);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> p2p.mapSg(hca, a, DmaDirection.NONE)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> p2p.mapSg(hca, null, DmaDirection.TO_DEVICE)).errno());
        p2p.memory(a.provider()).orElseThrow().free(a);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> p2p.mapSg(hca, a, DmaDirection.TO_DEVICE)).errno(),
                "a freed allocation");
        P2pDma other = P2pDma.of(files.boot()); // a machine has one core: another core is another machine's
        P2pAllocation b = p2p.memory(a.provider()).orElseThrow().alloc(4096);
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> other.mapSg(hca, b, DmaDirection.TO_DEVICE)).errno(),
                "p2pmem of another core");
    }
}
