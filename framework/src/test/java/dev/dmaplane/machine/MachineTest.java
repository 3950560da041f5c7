package dev.dmaplane.machine;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.dma.DmaDebugReport;
import dev.dmaplane.dma.DmaDirection;
import dev.dmaplane.dma.MappedSg;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.PinFlags;
import dev.dmaplane.mm.PinnedPages;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.testing.CopyEngineClient;
import dev.dmaplane.testing.TestMachines;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The default machine end to end: IOMMU groups from ACS (drivers/iommu/iommu.c pci_device_group), a device
 * DMA-ing through its domain (Documentation/core-api/dma-api-howto.rst), user memory pinned for DMA
 * (Documentation/core-api/pin_user_pages.rst, case 1: O_DIRECT-like), faults, and surprise removal
 * (drivers/pci/remove.c).
 */
class MachineTest {
    private final Machine machine = TestMachines.boot(TestMachines.DEFAULT_COPYENGINE);
    private final PciFunction gpu = machine.pci().function("03:00.0");
    private final List<String> log = new ArrayList<>();

    @AfterEach
    void close() {
        machine.close();
        assertTrue(machine.memory().isClosed());
    }

    @Test
    void defaultMachineBootsLazilyWithGroupsFromAcs() {
        assertEquals(64L << 30, machine.memory().size());
        assertTrue(machine.memory().residentBytes() <= 4L << 20, "only the swiotlb pool is backed at boot");
        IommuGroup g = machine.iommu().groupOf(gpu).orElseThrow();
        assertTrue(g.devices().contains(machine.pci().function("04:00.0")), "GPU and HCA share a group: the switch has no ACS");
        assertEquals(List.of(machine.pci().function("06:00.0")), machine.iommu().groupOf(machine.pci().function("06:00.0")).orElseThrow().devices());
        assertEquals(IommuDomainType.DMA, g.defaultDomain().type());
        assertEquals(machine.pci().functions().size(), machine.devices().devices().size());
        assertTrue(machine.physical().regionAt(gpu.bar(2).orElseThrow().address()) != null, "VRAM is decoded for peers");
    }

    @Test
    void copyEngineMovesBytesThroughTheIommuAndFaultsOnUnmappedIova() {
        HostMemory mem = machine.memory();
        long src = mem.allocPages(2) << HostMemory.PAGE_SHIFT;
        long dst = mem.allocPages(2) << HostMemory.PAGE_SHIFT;
        for (int i = 0; i < 16384; i++) {
            mem.slice(src, 16384).set(ValueLayout.JAVA_BYTE, i, (byte) (i * 31 + 7));
        }
        try (CopyEngineClient ce = new CopyEngineClient(gpu)) {
            long s = gpu.dma().mapSingle(src, 16384, DmaDirection.TO_DEVICE);
            long d = gpu.dma().mapSingle(dst, 16384, DmaDirection.FROM_DEVICE);
            assertEquals(ST_OK, ce.submit(s, d, 16384, 0));
            gpu.dma().syncSingleForCpu(d, 16384, DmaDirection.FROM_DEVICE);
            assertEquals(MemorySegment.mismatch(mem.slice(src, 16384), 0, 16384, mem.slice(dst, 16384), 0, 16384), -1L);

            assertEquals(ST_OK, ce.submit(0xA5, d + 100, 50, FLAG_FILL));
            assertEquals((byte) 0xA5, mem.slice(dst, 4096).get(ValueLayout.JAVA_BYTE, 149));
            assertEquals((byte) (99 * 31 + 7), mem.slice(dst, 4096).get(ValueLayout.JAVA_BYTE, 99));

            long unmapped = 1L << 20; // well below the IOVAs the allocator hands out top-down
            assertEquals(ST_WRITE_FAULT, ce.submit(s, unmapped, 64, 0));
            assertEquals(STATUS_ENABLED | STATUS_HALTED, ce.read(REG_STATUS));
            assertEquals(unmapped, ce.read(REG_FAULT_ADDR));
            assertEquals(unmapped, machine.iommu().faults().getLast().iova());
            assertTrue(machine.iommu().faults().getLast().write());
            assertEquals(ST_PENDING, ce.submit(s, d, 64, 0), "a halted engine processes nothing until reset");
            gpu.dma().unmapSingle(s, 16384, DmaDirection.TO_DEVICE);
            gpu.dma().unmapSingle(d, 16384, DmaDirection.FROM_DEVICE);
        }
        assertEquals(0, machine.activeDmaMappings());
        assertFalse(machine.tracer().select(e -> e.kind() == TraceKind.FAULT && e.device().equals("0000:03:00.0")).isEmpty());
    }

    @Test
    void pinnedUserMemoryIsCopiedByTheDeviceLikeODirect() {
        long framesBefore = machine.memory().allocatedFrames();
        AddressSpace mm = machine.newAddressSpace("app");
        long a = mm.mmapAnonymous(64 * 1024, Prot.PROT_READ | Prot.PROT_WRITE);
        long b = mm.mmapAnonymous(64 * 1024, Prot.PROT_READ | Prot.PROT_WRITE);
        byte[] text = "written by the CPU into one process buffer, read back from another after a device copy".getBytes();
        mm.write(a + 5000, MemorySegment.ofArray(text));
        try (PinnedPages pa = mm.pin(a, 64 * 1024, EnumSet.of(PinFlags.LONGTERM));
             PinnedPages pb = mm.pin(b, 64 * 1024, EnumSet.of(PinFlags.WRITE, PinFlags.LONGTERM));
             CopyEngineClient ce = new CopyEngineClient(gpu)) {
            MappedSg sa = gpu.dma().mapSg(pa.toSgTable(), DmaDirection.TO_DEVICE);
            MappedSg sb = gpu.dma().mapSg(pb.toSgTable(), DmaDirection.FROM_DEVICE);
            assertEquals(1, sa.segments().size(), "16 scattered pages become one contiguous IOVA range");
            assertEquals(ST_OK, ce.submit(sa.segments().getFirst().dmaAddress(), sb.segments().getFirst().dmaAddress(), 64 * 1024, 0));
            gpu.dma().unmapSg(sa, DmaDirection.TO_DEVICE);
            gpu.dma().unmapSg(sb, DmaDirection.FROM_DEVICE);
        }
        byte[] back = new byte[text.length];
        mm.read(b + 5000, MemorySegment.ofArray(back));
        assertArrayEquals(text, back);
        assertEquals(0, mm.pinnedPages());
        assertEquals(0, machine.activeDmaMappings());
        mm.close();
        assertEquals(framesBefore, machine.memory().allocatedFrames(), "exit_mmap freed every page");
    }

    @Test
    void surpriseRemovalUnbindsBottomUpAndReclaimsWhatTheDriverLeft() {
        Driver careless = new Driver() {
            @Override
            public String name() {
                return "careless";
            }

            @Override
            public MatchTable matchTable() {
                return MatchTable.of(MatchEntry.Pci.of(0x1da0, 0x0001), MatchEntry.Pci.of(0x1da0, 0x0002));
            }

            @Override
            public BoundDevice probe(Device device, MatchEntry match) {
                device.dma().allocCoherent(4096);
                log.add("probe " + device.name());
                return () -> log.add("remove " + device.name());
            }
        };
        long frames = machine.memory().allocatedFrames();
        machine.devices().registerDriver(careless);
        assertEquals(3, machine.activeDmaMappings());
        machine.hotUnplug(machine.pci().function("00:01.0"));
        assertEquals(List.of("probe 0000:03:00.0", "probe 0000:04:00.0", "probe 0000:05:00.0",
                "remove 0000:04:00.0", "remove 0000:03:00.0"), log);
        assertEquals(2, machine.dmaDebug().reports(DmaDebugReport.Kind.LEAK_AT_UNBIND).size());
        assertEquals(1, machine.activeDmaMappings(), "only the HCA on the other root port keeps its buffer");
        assertFalse(gpu.isPresent());
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, gpu::dma).errno());
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> machine.hotUnplug(gpu)).errno());
        machine.devices().unregisterDriver(careless);
        assertEquals(frames, machine.memory().allocatedFrames());
    }

    @Test
    void machineFilesAreValidatedBeforeAnythingIsBuilt() {
        String noIommu = TestMachines.text(TestMachines.DEFAULT_COPYENGINE).replace("enabled: true", "enabled: false").replace("memory: 64GiB", "memory: 1GiB");
        try (Machine m = Machine.boot(TopologyLoader.load(noIommu, TopologyLoader.Format.YAML), Machine.Options.DEFAULT)) {
            PciFunction g = m.pci().function("03:00.0");
            long pa = m.memory().allocPages(0) << HostMemory.PAGE_SHIFT;
            assertEquals(pa, g.dma().mapSingle(pa, 64, DmaDirection.TO_DEVICE), "without an IOMMU the bus address is physical");
            assertTrue(m.iommu().groups().isEmpty());
        }
    }

    /**
     * A machine with the most RAM a machine file may give (1 TiB less the PCI hole, so that RAM ends where the
     * physical address map starts the 64-bit MMIO window) boots, and its RAM costs what it touches: sparse sections as {@code mm/sparse.c} keeps them.
     */
    @Test
    void aTerabyteMachineBootsAndCostsWhatItTouches() {
        String big = TestMachines.text(TestMachines.DEFAULT_COPYENGINE).replace("memory: 64GiB", "memory: 1023GiB");
        try (Machine m = Machine.boot(TopologyLoader.load(big, TopologyLoader.Format.YAML), Machine.Options.DEFAULT)) {
            assertEquals(HostMemory.MAX_RAM, m.memory().size());
            assertEquals(1L << 40, m.memory().end());
            assertTrue(m.memory().residentBytes() <= 4L << 20, "only the swiotlb pool is backed at boot");
            long top = m.memory().end() - HostMemory.PAGE_SIZE;
            m.physical().write(top, MemorySegment.ofArray(new byte[]{9}));
            byte[] back = new byte[1];
            m.physical().read(top, MemorySegment.ofArray(back));
            assertEquals(9, back[0]);
        }
    }
}
