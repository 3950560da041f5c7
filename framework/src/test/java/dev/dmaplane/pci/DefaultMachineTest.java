package dev.dmaplane.pci;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.BusType;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.trace.Tracer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The embedded default machine. Groups follow {@code pci_device_group} ({@code drivers/iommu/iommu.c}) with
 * {@code pci_acs_enabled}/{@code pci_acs_path_enabled} ({@code drivers/pci/pci.c}); device order follows
 * {@code pci_bus_add_devices}; bridge windows and BARs follow {@code drivers/pci/setup-bus.c}; the tree is drawn as
 * pciutils' {@code ls-tree.c} draws {@code lspci -tv}.
 */
class DefaultMachineTest {
    private PciTopology t;

    @BeforeEach
    void load() {
        t = TopologyLoader.defaultMachine();
    }

    @AfterEach
    void close() {
        t.close();
    }

    private static List<String> names(List<PciFunction> fns) {
        return fns.stream().map(PciFunction::name).toList();
    }

    @Test
    void machineSettings() {
        MachineSpec m = t.machine();
        assertEquals(64L << 30, m.memoryBytes());
        assertTrue(m.iommu().enabled());
        assertEquals(MachineSpec.DefaultDomain.DMA, m.iommu().defaultDomain());
        assertEquals(1, t.hostBridges().size());
        HostBridge hb = t.hostBridges().getFirst();
        assertEquals(0, hb.domain());
        assertFalse(hb.p2pAllowed());
        assertEquals("pci0000:00", hb.name());
        assertEquals(0, hb.rootBus().number());
        assertTrue(hb.rootBus().isRoot());
    }

    @Test
    void functionsInKernelAddOrder() {
        assertEquals(List.of("0000:00:01.0", "0000:00:02.0", "0000:00:03.0", "0000:01:00.0", "0000:02:00.0",
                "0000:02:01.0", "0000:03:00.0", "0000:04:00.0", "0000:05:00.0", "0000:06:00.0"), names(t.functions()));
        for (PciFunction f : t.functions()) {
            assertEquals(BusType.PCI, f.bus());
            assertEquals(f.bdf().toString(), f.name());
            assertSame(f, t.function(f.bdf()));
        }
    }

    @Test
    void busNumbersAndParents() {
        Map<String, int[]> expected = Map.of("00:01.0", new int[]{0, 1, 4}, "01:00.0", new int[]{1, 2, 4},
                "02:00.0", new int[]{2, 3, 3}, "02:01.0", new int[]{2, 4, 4}, "00:02.0", new int[]{0, 5, 5},
                "00:03.0", new int[]{0, 6, 6});
        expected.forEach((bdf, buses) -> {
            PciFunction br = t.function(bdf);
            assertTrue(br.isBridge(), bdf);
            ConfigSpace cs = br.configSpace();
            assertArrayEquals(buses, new int[]{cs.primaryBus(), cs.secondaryBus(), cs.subordinateBus()}, bdf);
            PciBus sub = br.subordinate().orElseThrow();
            assertEquals(buses[1], sub.number());
            assertSame(br, sub.self().orElseThrow());
            assertSame(br.pciBus(), sub.parent().orElseThrow());
        });
        PciFunction gpu = t.function("03:00.0");
        assertFalse(gpu.isBridge());
        assertTrue(gpu.subordinate().isEmpty());
        assertSame(t.function("02:00.0"), gpu.parent().orElseThrow());
        assertTrue(t.function("00:01.0").parent().isEmpty());
        assertEquals(names(List.of(t.function("02:00.0"), t.function("02:01.0"))),
                names(t.function("01:00.0").subordinate().orElseThrow().devices()));
        assertEquals(3, t.hostBridges().getFirst().rootBus().children().size());
    }

    @Test
    void upstreamPathRunsToTheRootPort() {
        assertEquals(List.of("0000:02:00.0", "0000:01:00.0", "0000:00:01.0"), names(t.upstreamPath(t.function("03:00.0"))));
        assertEquals(List.of("0000:00:03.0"), names(t.upstreamPath(t.function("06:00.0"))));
        assertEquals(List.of(), t.upstreamPath(t.function("00:02.0")));
    }

    @Test
    void portTypesAndAcs() {
        assertEquals(PciPortType.ROOT_PORT, t.function("00:01.0").portType().orElseThrow());
        assertEquals(PciPortType.UPSTREAM, t.function("01:00.0").portType().orElseThrow());
        assertEquals(PciPortType.DOWNSTREAM, t.function("02:01.0").portType().orElseThrow());
        assertEquals(PciPortType.ENDPOINT, t.function("06:00.0").portType().orElseThrow());
        for (String rp : List.of("00:01.0", "00:02.0", "00:03.0")) {
            assertEquals(Acs.REQUIRED, t.function(rp).acs().orElseThrow(), rp);
            assertTrue(t.function(rp).acsEnabled(Acs.REQUIRED), rp);
        }
        assertTrue(t.function("02:00.0").acs().isEmpty());
        assertFalse(t.function("02:00.0").acsEnabled(Acs.REQUIRED));
        assertTrue(t.function("01:00.0").acsEnabled(Acs.REQUIRED), "a single-function upstream port counts as isolating");
        assertTrue(t.acsPathEnabled(t.function("01:00.0"), Acs.REQUIRED));
        assertFalse(t.acsPathEnabled(t.function("03:00.0"), Acs.REQUIRED));
        assertTrue(t.acsPathEnabled(t.function("05:00.0"), Acs.REQUIRED));
        assertTrue(t.acsPathEnabled(t.function("01:00.0"), t.function("00:01.0"), Acs.REQUIRED));
    }

    @Test
    void gpuAndFirstHcaShareAGroupSecondHcaAndNvmeAreAlone() {
        PciFunction gpu = t.function("03:00.0");
        PciFunction hca1 = t.function("04:00.0");
        PciFunction hca2 = t.function("05:00.0");
        PciFunction nvme = t.function("06:00.0");
        assertEquals(t.isolationGroupId(gpu), t.isolationGroupId(hca1));
        assertEquals(List.of("0000:02:00.0", "0000:02:01.0", "0000:03:00.0", "0000:04:00.0"), names(t.isolationGroup(gpu)));
        assertEquals(List.of(hca2), t.isolationGroup(hca2));
        assertEquals(List.of(nvme), t.isolationGroup(nvme));
        assertNotEquals(t.isolationGroupId(hca2), t.isolationGroupId(nvme));
        assertEquals(List.of(List.of("0000:00:01.0"), List.of("0000:00:02.0"), List.of("0000:00:03.0"),
                List.of("0000:01:00.0"), List.of("0000:02:00.0", "0000:02:01.0", "0000:03:00.0", "0000:04:00.0"),
                List.of("0000:05:00.0"), List.of("0000:06:00.0")),
                t.isolationGroups().stream().map(DefaultMachineTest::names).toList());
    }

    @Test
    void barsAreNaturallyAlignedInsideEveryUpstreamWindowAndDisjoint() {
        List<long[]> ranges = new ArrayList<>();
        for (PciFunction f : t.functions()) {
            for (Bar b : f.bars()) {
                long a = b.address();
                // register BARs are non-prefetchable: the 32-bit window in the PCI hole; VRAM above RAM
                assertTrue(b.prefetchable() ? a >= TopologyLoader.MMIO64_BASE
                        : a >= TopologyLoader.MMIO32_BASE && a + b.size() <= TopologyLoader.MMIO32_LIMIT, f + " " + b);
                assertEquals(0, a % b.size(), f + " " + b);
                for (PciFunction up : t.upstreamPath(f)) {
                    ConfigSpace.Window w = (b.prefetchable() ? up.configSpace().prefetchableWindow()
                            : up.configSpace().memoryWindow()).orElseThrow();
                    assertTrue(a >= w.base() && a + b.size() - 1 <= w.limit(), b + " outside window of " + up);
                }
                for (long[] r : ranges) {
                    assertTrue(a + b.size() <= r[0] || a >= r[1], b + " overlaps another BAR");
                }
                ranges.add(new long[]{a, a + b.size()});
            }
        }
        assertEquals(5, ranges.size());
        Bar vram = t.function("03:00.0").bar(2).orElseThrow();
        assertEquals(16L << 30, vram.size());
        assertTrue(vram.is64Bit() && vram.prefetchable());
        assertInstanceOf(Bar.Memory.class, vram.backing());
        assertInstanceOf(Bar.Mmio.class, t.function("03:00.0").bar(0).orElseThrow().backing());
        assertEquals(16 << 10, t.function("06:00.0").bar(0).orElseThrow().size());
        assertTrue(t.function("03:00.0").bar(1).isEmpty());
    }

    @Test
    void vramCostsNothingUntilWrittenAndDiesWithTheTopology() {
        Bar.Memory vram = t.function("03:00.0").bar(2).orElseThrow().memory();
        assertEquals(0, vram.committedBytes());
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(8);
            v.set(ValueLayout.JAVA_LONG, 0, 0xfeedface_cafef00dL);
            vram.write((15L << 30) + 64, v);
            MemorySegment r = a.allocate(8);
            vram.read((15L << 30) + 64, r);
            assertEquals(0xfeedface_cafef00dL, r.get(ValueLayout.JAVA_LONG, 0));
            assertEquals(Bar.Memory.CHUNK_SIZE, vram.committedBytes());
            t.close();
            assertTrue(t.isClosed());
            assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> vram.read(0, r)).errno());
        }
    }

    @Test
    void busMasterEnableIsTheCommandBit() {
        PciFunction hca = t.function("05:00.0");
        assertFalse(hca.busMasterEnabled());
        hca.setMemorySpace(true);
        hca.setMaster(true);
        assertTrue(hca.busMasterEnabled());
        assertEquals(PciRegs.COMMAND_MEMORY | PciRegs.COMMAND_MASTER, hca.configSpace().command());
        hca.setMaster(false);
        assertFalse(hca.busMasterEnabled());
        assertTrue(hca.configSpace().memorySpaceEnabled());
    }

    @Test
    void modelsPropertiesAndIdMatching() {
        PciFunction gpu = t.function("03:00.0");
        assertEquals("gpu", gpu.model().orElseThrow());
        assertEquals("2", gpu.properties().get("vramBar"));
        assertEquals("nvme", t.function("06:00.0").model().orElseThrow(), "vfio-emu's NVMe controller");
        assertFalse(t.function("06:00.0").bar(0).orElseThrow().prefetchable(), "NVMe Base 2.0 3.1.4: BAR0 is not prefetchable");
        assertEquals("1GiB", t.function("06:00.0").properties().get("namespaceSize"));
        assertTrue(t.function("05:00.0").model().isEmpty(), "no HCA model yet");
        assertTrue(t.function("01:00.0").model().isEmpty());
        assertEquals(0x030200, gpu.classCode());
        assertTrue(gpu.matches(MatchEntry.Pci.of(0x1da0, 0x0001)));
        assertFalse(t.function("04:00.0").matches(MatchEntry.Pci.of(0x1da0, 0x0001)));
        assertTrue(t.function("06:00.0").matches(MatchEntry.Pci.ofClass(0x010802, 0xffffff)));
        assertTrue(t.function("04:00.0").matches(new MatchEntry.Pci(0x1da0, 0x0002, 0x1da0, 0x0002, 0, 0, 0)));
        assertFalse(gpu.matches(MatchEntry.Auxiliary.of("gpu.x")));
    }

    @Test
    void unknownBdfIsEnodev() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> t.function("09:00.0"));
        assertEquals(Errno.ENODEV, e.errno());
        assertTrue(e.getMessage().contains("0000:09:00.0"), e.getMessage());
        try (PciTopology other = TopologyLoader.defaultMachine()) {
            assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class,
                    () -> t.upstreamPath(other.function("03:00.0"))).errno(), "a function of another topology");
        }
    }

    @Test
    void lspciTreeShowsEveryFunction() {
        String tree = t.lspciTree();
        assertTrue(tree.startsWith("-[0000:00]-+-01.0-[01-04]----00.0-[02-04]--+-00.0-[03]----00.0  3D controller [1da0:0001] 0000:03:00.0 model=gpu\n"), tree);
        assertTrue(tree.contains("\\-03.0-[06]----00.0  Non-Volatile memory controller [1da0:0003] 0000:06:00.0"), tree);
        for (PciFunction f : t.functions()) {
            if (f.isBridge()) {
                ConfigSpace cs = f.configSpace();
                String sec = cs.secondaryBus() == cs.subordinateBus() ? String.format("%02x", cs.secondaryBus())
                        : String.format("%02x-%02x", cs.secondaryBus(), cs.subordinateBus());
                assertTrue(tree.contains(String.format("%02x.%x-[%s]-", f.bdf().device(), f.bdf().function(), sec)), f + "\n" + tree);
            } else {
                assertTrue(tree.contains(f.bdf().toString()), f + "\n" + tree);
            }
        }
        assertEquals(4, tree.lines().count());
    }

    @Test
    void lspciTreeNamesTheBoundDriver() {
        DeviceCore core = new DeviceCore(new Tracer());
        Driver nvme = new Driver() {
            @Override
            public String name() {
                return "nvme";
            }

            @Override
            public MatchTable matchTable() {
                return MatchTable.of(MatchEntry.Pci.ofClass(0x010802, 0xffffff));
            }

            @Override
            public BoundDevice probe(Device device, MatchEntry match) {
                return () -> { };
            }
        };
        core.registerDriver(nvme);
        for (PciFunction f : t.functions()) {
            core.addDevice(f, null);
        }
        assertSame(nvme, t.function("06:00.0").driver().orElseThrow());
        assertTrue(t.lspciTree().contains("0000:06:00.0 model=nvme driver=nvme"), t.lspciTree());
        assertTrue(t.lspciVerbose(t.function("06:00.0")).contains("Kernel driver in use: nvme"));
        assertFalse(t.lspciTree().contains("0000:05:00.0 driver="));
    }

    /** The decode epoch counts this topology's config writes only: another machine's do not invalidate its caches. */
    @Test
    void configWritesMoveOnlyTheirOwnTopologysDecodeEpoch() {
        PciTopology other = TopologyLoader.defaultMachine();
        try {
            long mine = t.decodeEpoch();
            long theirs = other.decodeEpoch();
            other.function("03:00.0").setMemorySpace(false);
            assertEquals(mine, t.decodeEpoch());
            assertTrue(other.decodeEpoch() != theirs);
            t.function("03:00.0").setMaster(true);
            assertTrue(t.decodeEpoch() != mine);
        } finally {
            other.close();
        }
    }

    @Test
    void lspciVerboseDescribesRegionsCapabilitiesAndAcs() {
        String gpu = t.lspciVerbose(t.function("03:00.0"));
        assertTrue(gpu.startsWith("0000:03:00.0 3D controller [0302]: Device 1da0:0001\n"), gpu);
        // firmware left memory decoding on where it assigned BARs (Control: Mem+), so no region is [disabled]
        assertTrue(gpu.contains("\tRegion 2: Memory at 10000000000 (64-bit, prefetchable) [size=16G]\n"), gpu);
        assertTrue(gpu.contains("\tRegion 0: Memory at c0000000 (64-bit, non-prefetchable) [size=16M]\n"), gpu);
        assertTrue(gpu.contains("Control: I/O- Mem+ BusMaster-"), gpu);
        t.function("03:00.0").setMemorySpace(false);
        assertTrue(t.lspciVerbose(t.function("03:00.0")).contains("(64-bit, prefetchable) [disabled] [size=16G]"));
        t.function("03:00.0").setMemorySpace(true);
        assertTrue(gpu.contains("\tIOMMU group: " + t.isolationGroupId(t.function("03:00.0")) + "\n"), gpu);
        assertTrue(gpu.contains("Capabilities: [50] Express (v2) Endpoint, MSI 00"), gpu);
        assertTrue(gpu.contains("Capabilities: [90] MSI-X: Enable- Count=64 Masked-"), gpu);
        assertTrue(gpu.contains("Device model: gpu {vramBar=2}"), gpu);
        assertFalse(gpu.contains("Access Control Services"));

        String rp = t.lspciVerbose(t.function("00:01.0"));
        assertTrue(rp.contains("Bus: primary=00, secondary=01, subordinate=04"), rp);
        assertTrue(rp.contains("Capabilities: [100 v1] Access Control Services\n"), rp);
        assertTrue(rp.contains("\t\tACSCtl:\tSrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-\n"), rp);
        assertTrue(rp.contains("Express (v2) Root Port (Slot+), MSI 00"), rp);
        assertTrue(rp.contains("Prefetchable memory behind bridge: 0000010000000000-"), rp);
        // the register BARs below (GPU 16M, HCA 1M) are non-prefetchable: the 32-bit window in the PCI hole carries them
        assertTrue(rp.contains("\tMemory behind bridge: c0000000-c10fffff [size=17M] [32-bit]\n"), rp);
    }

    @Test
    void defaultTextIsTheEmbeddedResourceAndCommented() {
        String text = TopologyLoader.defaultMachineText();
        assertTrue(text.lines().anyMatch(l -> l.startsWith("#")));
        assertEquals(TopologyLoader.parse(text, TopologyLoader.Format.YAML), t.machine());
    }
}
