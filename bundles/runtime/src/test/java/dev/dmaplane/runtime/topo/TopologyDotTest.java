package dev.dmaplane.runtime.topo;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.heap.SystemHeap;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.MapType;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.trace.TraceKind;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;

import static dev.dmaplane.runtime.topo.TopoRig.GPU;
import static dev.dmaplane.runtime.topo.TopoRig.HCA;
import static dev.dmaplane.runtime.topo.TopoRig.HCA2;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The DOT text of the machine's picture, without Graphviz: the PCI tree as {@code lspci -tv} draws it, one cluster per
 * IOMMU group ({@code /sys/kernel/iommu_groups}) holding exactly its functions, the ACS Control bits of each port
 * ({@code pci_regs.h} {@code PCI_ACS_CTRL}), the bound drivers, the peer-to-peer edges labelled with
 * {@code enum pci_p2pdma_map_type} ({@code include/linux/pci-p2pdma.h}, judged by {@code drivers/pci/p2pdma.c}) and
 * the dma-bufs with their exporter and importers ({@code drivers/dma-buf/dma-buf.c} bufinfo).
 */
class TopologyDotTest {
    /** The lines of {@code dot} inside the cluster named {@code cluster}. */
    private static List<String> cluster(String dot, String cluster) {
        List<String> lines = dot.lines().toList();
        int start = lines.indexOf("  subgraph \"" + cluster + "\" {");
        assertTrue(start >= 0, cluster + " missing in\n" + dot);
        int end = lines.subList(start, lines.size()).indexOf("  }") + start;
        return lines.subList(start + 1, end);
    }

    private static boolean declares(List<String> lines, String node) {
        return lines.stream().anyMatch(l -> l.strip().startsWith("\"" + node + "\" [label="));
    }

    @Test
    void everyIommuGroupIsAClusterHoldingExactlyItsFunctions() {
        try (TopoRig rig = TopoRig.onDefaultMachine()) {
            String dot = TopologyDot.render(rig.machine);
            assertTrue(dot.startsWith("digraph dmaplane {"), dot);
            List<IommuGroup> groups = rig.machine.iommu().groups();
            assertEquals(7, groups.size(), "three root ports, the switch upstream port, the switch downstream side with the GPU and the first HCA, the second HCA, the NVMe");
            for (IommuGroup g : groups) {
                List<String> inside = cluster(dot, "cluster_iommu_group_" + g.id());
                assertTrue(inside.getFirst().contains("IOMMU group " + g.id() + "\\ndomain " + g.domain().name()), inside.getFirst());
                for (PciFunction f : rig.machine.pci().functions()) {
                    boolean member = g.devices().contains(f);
                    assertEquals(member, declares(inside, f.name()), f.name() + " in group " + g.id() + ": " + inside);
                }
            }
            List<String> switchGroup = cluster(dot, "cluster_iommu_group_"
                    + rig.machine.iommu().groupOf(rig.fn(GPU)).orElseThrow().id());
            for (String bdf : List.of("0000:02:00.0", "0000:02:01.0", GPU, HCA)) {
                assertTrue(declares(switchGroup, bdf), bdf + " shares the group of the switch without ACS");
            }
            for (PciFunction f : rig.machine.pci().functions()) {
                assertEquals(1, dot.lines().filter(l -> l.strip().startsWith("\"" + f.name() + "\" [label=")).count(),
                        f.name() + " declared once");
            }
        }
    }

    @Test
    void theTreeCarriesAcsControlsDriversAndParentEdges() {
        try (TopoRig rig = TopoRig.onDefaultMachine()) {
            String dot = TopologyDot.render(rig.machine);
            assertTrue(dot.contains("label=\"dmaplane machine: 64 GiB RAM, IOMMU on, default domain dma\""), dot);
            assertTrue(dot.contains("\"pci0000:00\" [shape=box3d, label=\"host bridge pci0000:00\\np2pdma whitelist: no\"]"), dot);
            assertTrue(dot.contains("\"pci0000:00\" -> \"0000:00:01.0\" [arrowhead=none];"), dot);
            assertTrue(dot.contains("\"0000:01:00.0\" -> \"0000:02:00.0\" [arrowhead=none];"), dot);
            assertTrue(dot.contains("\"0000:02:00.0\" -> \"" + GPU + "\" [arrowhead=none];"), dot);
            String rootPort = line(dot, "0000:00:01.0");
            assertTrue(rootPort.contains("Root Port [1da0:1000] class 060400") && rootPort.contains("\\nACS: SV RR CR UF\\n"), rootPort);
            assertTrue(line(dot, "0000:02:00.0").contains("Downstream Port") && line(dot, "0000:02:00.0").contains("\\nno ACS\\n"),
                    line(dot, "0000:02:00.0"));
            assertTrue(line(dot, GPU).contains("\\nmodel gpu\\ndriver: gpu, bus master\""), line(dot, GPU));
            assertTrue(line(dot, HCA).contains("\\ndriver: " + TopoRig.HCA_DRIVER + ", bus master\""), line(dot, HCA));
            assertTrue(line(dot, "0000:06:00.0").contains("\\ndriver: -\""), line(dot, "0000:06:00.0"));
            assertFalse(line(dot, GPU).contains("ACS"), "endpoints carry no ACS line");
        }
    }

    private static String line(String dot, String node) {
        return dot.lines().filter(l -> l.strip().startsWith("\"" + node + "\" [label=")).findFirst().orElseThrow();
    }

    @Test
    void peerToPeerEdgesCarryTheMapTypeAndRenderingTracesNothing() {
        try (TopoRig rig = TopoRig.onDefaultMachine()) {
            long before = rig.machine.tracer().lastSeq();
            String dot = TopologyDot.render(rig.machine);
            assertEquals(List.of(), rig.machine.tracer().since(before).stream().filter(e -> e.kind() == TraceKind.P2PDMA).toList(),
                    "the picture only looks");
            assertTrue(dot.contains("\"" + GPU + "\" -> \"" + HCA + "\" [label=\"BUS_ADDR (distance 4)\", color=\"forestgreen\""), dot);
            assertTrue(dot.contains("\"" + GPU + "\" -> \"" + HCA2 + "\" [label=\"NOT_SUPPORTED\", color=\"firebrick\""), dot);
            assertTrue(dot.contains("\"" + HCA + "\" -> \"" + HCA2 + "\" [label=\"NOT_SUPPORTED\""), dot);
            assertEquals(3, dot.lines().filter(l -> l.contains("dir=none, constraint=false")).count(),
                    "one edge per pair of the three bus-mastering functions with a driver");
        }
        String whitelisted = TopologyLoader.defaultMachineText().replace("p2pAllowed: false", "p2pAllowed: true");
        try (TopoRig rig = new TopoRig(Machine.boot(TopologyLoader.load(whitelisted, TopologyLoader.Format.YAML),
                Machine.Options.DEFAULT))) {
            String dot = TopologyDot.render(rig.machine);
            assertTrue(dot.contains("\"" + GPU + "\" -> \"" + HCA2 + "\" [label=\"THRU_HOST_BRIDGE (distance 6)\", color=\"royalblue\""), dot);
            assertTrue(dot.contains("p2pdma whitelist: yes"), dot);
        }
    }

    @Test
    void dmaBufsAreNotesWithAnExportEdgeAndAnEdgePerImporter() {
        try (TopoRig rig = TopoRig.onDefaultMachine()) {
            Topology t = Topology.of(rig.machine);
            assertEquals(2, t.dmaBufs().size());
            Topology.Buffer prime = t.dmaBufs().getFirst();
            assertEquals(Optional.of(GPU), prime.exporterDevice(), "a PRIME export names the GPU");
            String dot = TopologyDot.render(t);
            String vram = "dmabuf_" + rig.vram.ino();
            String heap = "dmabuf_" + rig.heap.ino();
            assertTrue(dot.contains("\"" + GPU + "\" -> \"" + vram + "\" [label=\"exports\""), dot);
            assertTrue(dot.contains("\"" + vram + "\" -> \"" + HCA + "\" [label=\"imports (dynamic, p2p)\""), dot);
            assertTrue(dot.contains("\"" + vram + "\" -> \"" + HCA2 + "\" [label=\"imports (dynamic)\""),
                    "the exporter cleared peer2peer for the HCA across the root complex: " + dot);
            assertTrue(dot.contains("\"exporter_system\" [shape=cylinder, label=\"exporter system\"]"), dot);
            assertTrue(dot.contains("\"exporter_system\" -> \"" + heap + "\" [label=\"exports\""), dot);
            assertTrue(dot.contains("\"" + heap + "\" -> \"" + HCA2 + "\" [label=\"imports (static)\""), dot);
            assertTrue(dot.contains("\"" + vram + "\" [shape=note"), dot);
        }
    }

    /**
     * Every buffer of one heap ({@code drivers/dma-buf/heaps/system_heap.c}, one {@code exp_name}) hangs below one
     * exporter node, declared once.
     */
    @Test
    void anExporterIsOneNodeHoweverManyBuffersItExported() {
        try (TopoRig rig = TopoRig.onDefaultMachine()) {
            DmaBuf second = new SystemHeap(DmaBufs.of(rig.machine)).allocate(4096);
            try {
                String dot = TopologyDot.render(rig.machine);
                assertEquals(1, dot.lines().filter(l -> l.contains("\"exporter_system\" [shape=cylinder")).count(), dot);
                assertTrue(dot.contains("\"exporter_system\" -> \"dmabuf_" + rig.heap.ino() + "\""), dot);
                assertTrue(dot.contains("\"exporter_system\" -> \"dmabuf_" + second.ino() + "\""), dot);
            } finally {
                second.put();
            }
        }
    }

    /** The title gives RAM as {@code /proc/meminfo} readers expect it: whole GiB, else MiB (a machine file's 2 MiB steps). */
    @Test
    void theTitleGivesRamInGibOrMib() {
        String text = TopologyLoader.defaultMachineText().replace("memory: 64GiB", "memory: 1536MiB");
        try (Machine m = Machine.boot(TopologyLoader.load(text, TopologyLoader.Format.YAML), Machine.Options.DEFAULT)) {
            assertEquals("dmaplane machine: 1536 MiB RAM, IOMMU on, default domain dma", Topology.of(m).title());
        }
    }

    @Test
    void namesAreQuotedSoNoValueEndsTheString() {
        assertEquals("\"a\\\"b\\\\c\\nd\"", TopologyDot.quote("a\"b\\c\nd"));
        Topology odd = new Topology("t", List.of(new Topology.Bridge("pci\"0", false)),
                List.of(new Topology.PciDev("x\\\"y", "pci\"0", "Endpoint", false, 1, 2, 3, Optional.empty(),
                        Optional.empty(), Optional.empty(), false, Optional.of("model \"m\" is not loaded"),
                        OptionalInt.empty())), List.of(), List.of(new Topology.PeerPath("a", "b", MapType.BUS_ADDR, 2)),
                List.of());
        String dot = TopologyDot.render(odd);
        assertTrue(dot.contains("\"pci\\\"0\" -> \"x\\\\\\\"y\" [arrowhead=none];"), dot);
        assertTrue(dot.contains("absent: model \\\"m\\\" is not loaded"), dot);
        assertTrue(dot.contains("style=\"rounded,dashed\""), "absent hardware is drawn dashed: " + dot);
    }

    @Test
    void aClosedOrNullMachineIsRefused() {
        Machine m = Machine.bootDefault();
        m.close();
        assertEquals(Errno.ENODEV, assertThrows(ErrnoException.class, () -> TopologyDot.render(m)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> TopologyDot.render((Machine) null)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> TopologyDot.render((Topology) null)).errno());
    }
}
