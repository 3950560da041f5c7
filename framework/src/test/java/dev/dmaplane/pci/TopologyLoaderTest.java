package dev.dmaplane.pci;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.TopologyLoader.Format;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static dev.dmaplane.pci.Machines.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Machine-file rules. Enumeration rules follow {@code drivers/pci/probe.c}: bus numbers are handed out depth-first
 * ({@code pci_scan_bridge}), the link below a root or downstream port carries only device 0 ({@code only_one_child}),
 * functions past 0 are scanned only in a multi-function device ({@code pci_scan_slot}). BAR placement follows
 * {@code drivers/pci/setup-bus.c}: natural alignment, bridge windows in 1 MiB units. Every error names the path of
 * the bad entry.
 */
class TopologyLoaderTest {
    private static ErrnoException fails(String yaml) {
        return assertThrows(ErrnoException.class, () -> TopologyLoader.load(yaml, Format.YAML).close());
    }

    private static void assertMentions(ErrnoException e, String... parts) {
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "message lacks '" + p + "': " + e.getMessage());
        }
    }

    @Test
    void badBdfIsEinvalNamingPathAndText() {
        ErrnoException e = fails(rootPortWith("", endpoint("01:00.9")));
        assertEquals(Errno.EINVAL, e.errno());
        assertMentions(e, "pci.hostBridges[0].children[0].children[0].bdf", "'01:00.9'");
    }

    @Test
    void unquotedYamlBdfIsRefusedWithItsLocation() {
        String yaml = rootPortWith("", endpoint("01:00.0")).replace("\"01:00.0\"", "01:00.0");
        ErrnoException e = fails(yaml);
        assertEquals(Errno.EINVAL, e.errno());
        assertMentions(e, "<text>:12:27: ", "01:00.0");
    }

    @Test
    void functionOffItsParentsBusIsEinvalNamingPathAndBdf() {
        ErrnoException root = fails(rootPortWith("", endpoint("01:00.0")).replace("\"00:01.0\"", "\"01:01.0\""));
        assertEquals(Errno.EINVAL, root.errno());
        assertMentions(root, "pci.hostBridges[0].children[0].bdf", "0000:01:01.0", "root bus 0000:00");

        ErrnoException sw = fails(rootPortWith("", switchWith(
                downstreamPort("02:00.0", "", endpoint("03:00.0")) + "\n" + downstreamPort("05:01.0", "", endpoint("04:00.0")))));
        assertEquals(Errno.EINVAL, sw.errno());
        assertMentions(sw, "pci.hostBridges[0].children[0].children[0].children[1].bdf", "0000:05:01.0",
                "bus 02, the secondary bus of its parent 0000:01:00.0");
    }

    @Test
    void duplicateBdfIsEexist() {
        String twoPorts = rootPortWith("", endpoint("01:00.0")) + """
                        - bdf: "00:01.0"
                          type: rootPort
                          vendor: "0x1da0"
                          device: "0x1000"
                          class: "0x060400"
                """;
        ErrnoException e = fails(twoPorts);
        assertEquals(Errno.EEXIST, e.errno());
        assertMentions(e, "pci.hostBridges[0].children[1].bdf", "0000:00:01.0", "pci.hostBridges[0].children[0]");
    }

    @Test
    void badSizesAreEinvalNamingTheValue() {
        for (String bad : new String[]{"1.5MiB", "16MB", "lots", "-4096"}) {
            ErrnoException e = fails(rootPortWith("", endpoint("01:00.0")).replace("size: 1MiB", "size: \"" + bad + "\""));
            assertEquals(Errno.EINVAL, e.errno(), bad);
            assertMentions(e, "pci.hostBridges[0].children[0].children[0].bars[0].size", "'" + bad + "'");
        }
        ErrnoException pow2 = fails(rootPortWith("", endpoint("01:00.0")).replace("size: 1MiB", "size: 3MiB"));
        assertEquals(Errno.EINVAL, pow2.errno());
        assertMentions(pow2, "pci.hostBridges[0].children[0].children[0]", "0000:01:00.0", "power of two");
    }

    /** The endpoint 01:00.0 below a root port with {@code bars} (YAML flow entries) instead of its 1 MiB BAR. */
    private static String endpointBars(String bars) {
        return rootPortWith("", endpoint("01:00.0").replace("- { index: 0, size: 1MiB }", bars.replace("\n", "\n    ")));
    }

    private static void assertBad(String yaml, String path, String value, String... more) {
        ErrnoException e = fails(yaml);
        assertEquals(Errno.EINVAL, e.errno(), e.getMessage());
        assertMentions(e, path + ": '" + value + "'");
        assertMentions(e, more);
    }

    private static final String EP = "pci.hostBridges[0].children[0].children[0]";

    /**
     * A BAR's size is the alignment of its address (PCI Local Bus Spec 3.0 6.2.5.1: a power of two), so it is checked
     * before the MMIO plan aligns anything with it: a size that is no power of two, below 4 KiB, too large for a
     * 32-bit BAR, or too large for the window the BAR is placed in is EINVAL naming the field and the value.
     */
    @Test
    void barSizesAreCheckedBeforeTheyAreUsedAsAlignments() {
        assertBad(endpointBars("- { index: 0, size: 0x7fffffffffe00000 }"), EP + ".bars[0].size", "0x7fffffffffe00000",
                "0000:01:00.0 BAR 0", "power of two");
        assertBad(endpointBars("- { index: 0, size: \"0x7fffffffffe00000\", bits: 32, prefetchable: false }"),
                EP + ".bars[0].size", "0x7fffffffffe00000", "power of two");
        assertBad(endpointBars("- { index: 0, size: 1MiB }\n- { index: 2, size: 2048 }"), EP + ".bars[1].size", "0x800",
                "4KiB");
        assertBad(endpointBars("- { index: 0, size: 0 }"), EP + ".bars[0].size", "0x0", "power of two");
        assertBad(endpointBars("- { index: 0, size: 4GiB, bits: 32, prefetchable: false }"), EP + ".bars[0].size",
                "0x100000000", "32-bit BAR");
        assertBad(endpointBars("- { index: 0, size: 0x4000000000000000, kind: memory }"), EP + ".bars[0].size", "0x4000000000000000",
                "64-bit prefetchable MMIO window", "0x800000000000");
        assertBad(endpointBars("- { index: 0, size: 1GiB, prefetchable: false }"), EP + ".bars[0].size", "0x40000000",
                "32-bit MMIO window", "0x20000000");
    }

    /**
     * BAR registers: six in a type 0 header, two in a bridge's, a 64-bit BAR takes two and no two BARs share one; a
     * PCI Express Endpoint's prefetchable BARs are 64-bit (PCIe Base Spec 7.5.1.2.1), so a 32-bit BAR defaults to
     * non-prefetchable and a prefetchable one is refused.
     */
    @Test
    void barRegistersAndThePrefetchableRuleAreCheckedWithTheirPath() {
        assertBad(endpointBars("- { index: 5, size: 1MiB }"), EP + ".bars[0].index", "5", "0..5");
        assertBad(endpointBars("- { index: 0, size: 1MiB }\n- { index: 1, size: 1MiB }"), EP + ".bars[1].index", "1",
                "bars[0]");
        assertBad(rootPortWith("", endpoint("01:00.0")).replace("class: \"0x060400\"",
                        "class: \"0x060400\"\n          bars: [ { index: 1, size: 1MiB } ]"),
                "pci.hostBridges[0].children[0].bars[0].index", "1", "Root Port", "0..1");
        assertBad(endpointBars("- { index: 0, size: 1MiB, bits: 32, prefetchable: true }"), EP + ".bars[0].bits", "32",
                "Endpoint", "64-bit");
        try (PciTopology t = TopologyLoader.load(endpointBars("- { index: 0, size: 1MiB, bits: 32 }"), Format.YAML)) {
            Bar b = t.function("01:00.0").bar(0).orElseThrow();
            assertFalse(b.prefetchable(), "a 32-bit BAR is non-prefetchable unless asked");
            assertTrue(b.address() >= TopologyLoader.MMIO32_BASE && b.address() < TopologyLoader.MMIO32_LIMIT);
        }
        String legacy = rootPortWith("", endpoint("01:00.0", "type: legacyEndpoint")
                .replace("- { index: 0, size: 1MiB }", "- { index: 0, size: 1MiB, bits: 32, prefetchable: true }"));
        try (PciTopology t = TopologyLoader.load(legacy, Format.YAML)) {
            assertTrue(t.function("01:00.0").bar(0).orElseThrow().prefetchable(), "legacy endpoints may have them");
        }
    }

    /** MSI-X: 1..2048 vectors, table and PBA 8-byte aligned inside their BAR, apart (PCIe Base Spec 7.7.2). */
    @Test
    void msixFieldsAreCheckedWithTheirPath() {
        assertBad(rootPortWith("", endpoint("01:00.0", "msix: { vectors: 0 }")), EP + ".msix.vectors", "0", "1 to 2048");
        assertBad(rootPortWith("", endpoint("01:00.0", "msix: { vectors: 8, table: 4 }")), EP + ".msix.table", "0x4",
                "8-byte aligned");
        assertBad(rootPortWith("", endpoint("01:00.0", "msix: { vectors: 8, table: 1MiB }")), EP + ".msix.table",
                "0x100000", "BAR 0");
        assertBad(rootPortWith("", endpoint("01:00.0", "msix: { vectors: 8, table: 0, pba: 64 }")), EP + ".msix.pba",
                "0x40", "overlaps");
    }

    /** The MSI-X table and PBA are registers (PCIe Base Spec 7.7.2), so they cannot sit in a BAR of device memory. */
    @Test
    void msixInAMemoryBarIsRefusedWithItsPath() {
        assertBad(rootPortWith("", endpoint("01:00.0", "msix: { vectors: 8, bar: 0 }")
                        .replace("size: 1MiB }", "size: 1MiB, kind: memory }")),
                EP + ".msix.bar", "0", "memory BAR", "kind mmio");
    }

    /** Vendor ID 0xffff is what config space reads with no function present, so no function has it. */
    @Test
    void vendorIdAllOnesIsRefusedWithItsPath() {
        ErrnoException e = fails(rootPortWith("", endpoint("01:00.0").replace("vendor: \"0x1da0\"", "vendor: \"0xffff\"")));
        assertEquals(Errno.EINVAL, e.errno());
        assertMentions(e, EP + ".vendor", "'0xffff'", "0xfffe");
    }

    /** A spec built in code is held to the same rules before its MMIO is planned, naming the function's path. */
    @Test
    void specsBuiltInCodeAreCheckedBeforePlanning() {
        MachineSpec parsed = TopologyLoader.parse(endpointBars("- { index: 0, size: 1MiB }"), Format.YAML);
        MachineSpec.FunctionSpec port = parsed.hostBridges().getFirst().children().getFirst();
        MachineSpec.FunctionSpec ep = port.children().getFirst();
        MachineSpec.FunctionSpec badEp = new MachineSpec.FunctionSpec(ep.bdf(), ep.type(), ep.vendorId(), ep.deviceId(),
                ep.classCode(), ep.revision(), ep.subsystemVendorId(), ep.subsystemId(), ep.multifunction(),
                List.of(new MachineSpec.BarSpec(0, 0x7fff_ffff_ffe0_0000L, MachineSpec.BarKind.MMIO, true, true)),
                ep.acs(), ep.msix(), ep.model(), ep.properties(), ep.children());
        MachineSpec.FunctionSpec badPort = new MachineSpec.FunctionSpec(port.bdf(), port.type(), port.vendorId(),
                port.deviceId(), port.classCode(), port.revision(), port.subsystemVendorId(), port.subsystemId(),
                port.multifunction(), port.bars(), port.acs(), port.msix(), port.model(), port.properties(), List.of(badEp));
        MachineSpec.HostBridgeSpec hb = parsed.hostBridges().getFirst();
        MachineSpec spec = new MachineSpec(parsed.memoryBytes(), parsed.iommu(), List.of(new MachineSpec.HostBridgeSpec(
                hb.domain(), hb.rootBus(), hb.name(), hb.p2pAllowed(), List.of(badPort))));
        ErrnoException e = assertThrows(ErrnoException.class, () -> TopologyLoader.build(spec).close());
        assertEquals(Errno.EINVAL, e.errno());
        assertMentions(e, EP + ".bars[0].size: '0x7fffffffffe00000'", "power of two");
    }

    @Test
    void unknownKeysAreEinvalNamingTheirPath() {
        ErrnoException fn = fails(rootPortWith("", endpoint("01:00.0", "colour: red")));
        assertEquals(Errno.EINVAL, fn.errno());
        assertMentions(fn, "pci.hostBridges[0].children[0].children[0].colour", "unknown key");
        ErrnoException top = fails("memroy: 1GiB\npci: {}\n");
        assertMentions(top, "memroy", "unknown key");
        ErrnoException bar = fails(rootPortWith("", endpoint("01:00.0")).replace("size: 1MiB", "size: 1MiB, cached: true"));
        assertMentions(bar, "bars[0].cached");
    }

    @Test
    void memoryMustBeAPositiveMultipleOfTwoMib() {
        assertMentions(fails("memory: 3MiB\npci: {}\n"), "memory", "'3MiB'");
        assertMentions(fails("memory: 0\npci: {}\n"), "memory");
        assertEquals(Errno.EINVAL, fails("pci: {}\n").errno(), "memory is required");
        assertEquals(512L << 20, TopologyLoader.parse("memory: 512MiB\npci: {}\n", Format.YAML).memoryBytes());
    }

    /**
     * RAM is at most 1 TiB less the 1 GiB PCI hole: RAM above 3 GiB continues at 4 GiB, and the physical address
     * map puts the 64-bit MMIO window at 1 TiB. A larger {@code memory:} is refused before anything is built,
     * naming the limit.
     */
    @Test
    void memoryBeyondThePhysicalAddressMapIsEinvalNamingTheLimit() {
        for (String big : new String[]{"1TiB", "1026GiB", "64TiB", "4096TiB", "0x7fffffffffe00000"}) {
            ErrnoException e = assertThrows(ErrnoException.class,
                    () -> TopologyLoader.parse("memory: \"" + big + "\"\npci: {}\n", Format.YAML));
            assertEquals(Errno.EINVAL, e.errno(), big);
            assertMentions(e, "memory", "'" + big + "'", "1TiB");
        }
        assertEquals((1L << 40) - (1L << 30), TopologyLoader.parse("memory: 1023GiB\npci: {}\n", Format.YAML).memoryBytes());
    }

    @Test
    void badHexAndOutOfRangeIdsAreEinval() {
        ErrnoException hex = fails(rootPortWith("", endpoint("01:00.0")).replace("device: \"0x0002\"", "device: \"0xZZ\""));
        assertMentions(hex, "children[0].children[0].device", "'0xZZ'");
        ErrnoException wide = fails(rootPortWith("", endpoint("01:00.0")).replace("class: \"0x020000\"", "class: \"0x1020000\""));
        assertMentions(wide, "children[0].children[0].class", "0x1020000");
    }

    @Test
    void pcieLinkCarriesOnlyDeviceZero() {
        ErrnoException e = fails(rootPortWith("", endpoint("01:03.0")));
        assertEquals(Errno.EINVAL, e.errno());
        assertMentions(e, "children[0].children[0].bdf", "0000:01:03.0", "device 00 only");
    }

    @Test
    void laterFunctionsNeedAMultifunctionFunctionZero() {
        ErrnoException e = fails(rootPortWith("", endpoint("01:00.0") + "\n" + endpoint("01:00.1")));
        assertEquals(Errno.EINVAL, e.errno());
        assertMentions(e, "children[0].children[1].bdf", "0000:01:00.1", "multifunction");
        try (PciTopology t = TopologyLoader.load(rootPortWith("",
                endpoint("01:00.0", "multifunction: true") + "\n" + endpoint("01:00.1")), Format.YAML)) {
            assertTrue(t.function("01:00.0").isMultifunction());
            assertTrue(t.function("01:00.1").isMultifunction(), "functions past 0 are multi-function (pci_scan_slot)");
        }
    }

    @Test
    void busesMustBeNumberedDepthFirst() {
        String yaml = """
                memory: 1GiB
                pci:
                  hostBridges:
                    - children:
                        - { bdf: "00:01.0", type: rootPort, vendor: "0x1da0", device: "0x1000", class: "0x060400",
                            children: [ { bdf: "05:00.0", vendor: "0x1da0", device: "0x2", class: "0x020000" } ] }
                        - { bdf: "00:02.0", type: rootPort, vendor: "0x1da0", device: "0x1000", class: "0x060400",
                            children: [ { bdf: "03:00.0", vendor: "0x1da0", device: "0x2", class: "0x020000" } ] }
                """;
        ErrnoException e = fails(yaml);
        assertEquals(Errno.EINVAL, e.errno());
        assertMentions(e, "pci.hostBridges[0].children[1].children[0].bdf", "0000:03:00.0", "depth-first");
    }

    @Test
    void emptyBridgesGetTheNextBusAndGapsAreKept() {
        String yaml = """
                memory: 1GiB
                pci:
                  hostBridges:
                    - children:
                        - { bdf: "00:01.0", type: rootPort, vendor: "0x1da0", device: "0x1000", class: "0x060400" }
                        - { bdf: "00:02.0", type: rootPort, vendor: "0x1da0", device: "0x1000", class: "0x060400",
                            children: [ { bdf: "10:00.0", vendor: "0x1da0", device: "0x2", class: "0x020000" } ] }
                """;
        try (PciTopology t = TopologyLoader.load(yaml, Format.YAML)) {
            assertEquals(1, t.function("00:01.0").configSpace().secondaryBus());
            assertEquals(0x10, t.function("00:02.0").configSpace().secondaryBus());
            assertEquals(0x10, t.function("00:02.0").configSpace().subordinateBus());
        }
    }

    @Test
    void placementRulesAreEnforced() {
        ErrnoException usOnRoot = fails("""
                memory: 1GiB
                pci:
                  hostBridges:
                    - children:
                        - { bdf: "00:01.0", type: upstreamPort, vendor: "0x1da0", device: "0x1001", class: "0x060400" }
                """);
        assertMentions(usOnRoot, "children[0].type", "Upstream Port", "root bus");
        ErrnoException kids = fails(rootPortWith("", endpoint("01:00.0",
                "children: [ { bdf: \"02:00.0\", vendor: \"0x1da0\", device: \"0x2\", class: \"0x020000\" } ]")));
        assertMentions(kids, "children[0].children[0].children", "not a bridge");
        ErrnoException cls = fails(rootPortWith("", endpoint("01:00.0")).replace("class: \"0x060400\"", "class: \"0x020000\""));
        assertMentions(cls, "pci.hostBridges[0].children[0]", "0000:00:01.0", "0x0604");
    }

    @Test
    void mmioWindowExhaustionIsEnospc() {
        String ep = """
                - bdf: "01:00.0"
                  vendor: "0x1da0"
                  device: "0x0002"
                  class: "0x020000"
                  bars:
                    - { index: 0, size: 512MiB, bits: 32 }
                    - { index: 1, size: 512MiB, bits: 32 }
                """;
        ErrnoException e = fails(rootPortWith("", ep));
        assertEquals(Errno.ENOSPC, e.errno());
        assertMentions(e, "pci.hostBridges[0]", "32-bit");
    }

    @Test
    void iommuSectionDefaultsAndValues() {
        MachineSpec none = TopologyLoader.parse("memory: 2MiB\npci: {}\n", Format.YAML);
        assertEquals(MachineSpec.IommuSpec.DEFAULT, none.iommu());
        MachineSpec id = TopologyLoader.parse("memory: 2MiB\niommu: {enabled: false, defaultDomain: identity}\npci: {}\n",
                Format.YAML);
        assertEquals(new MachineSpec.IommuSpec(false, MachineSpec.DefaultDomain.IDENTITY), id.iommu());
        assertMentions(fails("memory: 2MiB\niommu: {defaultDomain: paging}\npci: {}\n"), "iommu.defaultDomain", "'paging'");
        assertMentions(fails("memory: 2MiB\niommu: {enabled: \"yes\"}\npci: {}\n"), "iommu.enabled");
        assertTrue(none.iommu().dirtyTracking(), "dirty tracking unless the file says otherwise");
        MachineSpec clean = TopologyLoader.parse("memory: 2MiB\niommu: {dirtyTracking: false}\npci: {}\n", Format.YAML);
        assertEquals(new MachineSpec.IommuSpec(true, MachineSpec.DefaultDomain.DMA, false), clean.iommu());
        assertMentions(fails("memory: 2MiB\niommu: {dirtyTracking: 3}\npci: {}\n"), "iommu.dirtyTracking");
    }

    @Test
    void syntaxErrorsAreEinvalWithALocation() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> TopologyLoader.parse("{\"memory\": ", Format.JSON));
        assertEquals(Errno.EINVAL, e.errno());
        assertMentions(e, "<text>:1:12: ");
        ErrnoException dup = assertThrows(ErrnoException.class,
                () -> TopologyLoader.parse("memory: 2MiB\nmemory: 4MiB\npci: {}\n", Format.YAML));
        assertMentions(dup, "memory");
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> TopologyLoader.parse(" ", Format.YAML)).errno());
    }

    @Test
    void jsonAndYamlFormsLoadEqual() throws Exception {
        String yaml = TopologyLoader.defaultMachineText();
        JsonNode tree = new YAMLMapper().readTree(yaml);
        String json = JsonMapper.builder().build().writerWithDefaultPrettyPrinter().writeValueAsString(tree);
        assertTrue(json.trim().startsWith("{"), json);
        MachineSpec fromYaml = TopologyLoader.parse(yaml, Format.YAML);
        MachineSpec fromJson = TopologyLoader.parse(json, Format.JSON);
        assertEquals(fromYaml, fromJson);

        String handJson = """
                {"memory": "1GiB", "pci": {"hostBridges": [{"children": [
                  {"bdf": "00:01.0", "type": "rootPort", "vendor": "0x1da0", "device": "0x1000", "class": "0x060400",
                   "children": [{"bdf": "01:00.0", "vendor": "0x1da0", "device": "0x0002", "class": "0x020000",
                                 "bars": [{"index": 0, "size": "1MiB"}]}]}]}]}}
                """;
        assertEquals(TopologyLoader.parse(rootPortWith("", endpoint("01:00.0")), Format.YAML),
                TopologyLoader.parse(handJson, Format.JSON));
        try (PciTopology a = TopologyLoader.load(yaml, Format.YAML); PciTopology b = TopologyLoader.load(json, Format.JSON)) {
            assertEquals(a.lspciTree(), b.lspciTree());
        }
    }

    @Test
    void loadsFilesByExtension(@TempDir Path dir) throws Exception {
        Path y = dir.resolve("m.yml");
        Files.writeString(y, rootPortWith("", endpoint("01:00.0")));
        try (PciTopology t = TopologyLoader.load(y)) {
            assertEquals(2, t.functions().size());
        }
        assertEquals(Errno.ENOENT, assertThrows(ErrnoException.class, () -> TopologyLoader.load(dir.resolve("none.json"))).errno());
        ErrnoException ext = assertThrows(ErrnoException.class, () -> TopologyLoader.load(dir.resolve("m.txt")));
        assertEquals(Errno.EINVAL, ext.errno());
        assertMentions(ext, "m.txt");
    }

    @Test
    void msixOffsetsDefaultToTheBarsSecondHalf() {
        try (PciTopology t = TopologyLoader.load(rootPortWith("", endpoint("01:00.0", "msix: { vectors: 8 }")), Format.YAML)) {
            ConfigSpace cs = t.function("01:00.0").configSpace();
            int pos = cs.findCapability(PciRegs.CAP_ID_MSIX).orElseThrow();
            assertEquals(0x80000, cs.read(pos + PciRegs.MSIX_TABLE, 4));
            assertEquals(0x80000 + 8 * 16, cs.read(pos + PciRegs.MSIX_PBA, 4));
        }
        assertMentions(fails(rootPortWith("", endpoint("01:00.0", "msix: { vectors: 8, bar: 3 }"))), "msix.bar", "no BAR");
    }
}
