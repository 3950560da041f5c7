package dev.dmaplane.runtime.topo;

import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.Test;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;

import javax.xml.parsers.DocumentBuilderFactory;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.LinkedHashSet;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Graphviz as the oracle: the default machine's picture, with the GPU and both HCAs bound and a PRIME export and a
 * heap buffer attached ({@link TopoRig}), goes through the real {@code dot -Tsvg}, and every PCI function, every
 * IOMMU group ({@code /sys/kernel/iommu_groups}) and every dma-buf edge (exporter and importers, as
 * {@code drivers/dma-buf/dma-buf.c} bufinfo lists them) must be an element of the SVG, found by the
 * {@code <title>} Graphviz gives each node, cluster and edge. Runs where {@code dot} is on the PATH and fails without
 * it when {@code -Ddmaplane.require.tools} names {@code dot} (CI).
 */
class TopologySvgTest {
    private static final String INSTALL = "apt-get install graphviz (Debian, Ubuntu), dnf install graphviz (Fedora)";

    /** The titles of the SVG's {@code <g class="KIND">} elements: node names, cluster names, {@code tail->head}. */
    private static Set<String> titles(Document svg, String kind) {
        Set<String> out = new LinkedHashSet<>();
        NodeList groups = svg.getElementsByTagName("g");
        for (int i = 0; i < groups.getLength(); i++) {
            Element g = (Element) groups.item(i);
            NodeList title = g.getElementsByTagName("title");
            if (g.getAttribute("class").equals(kind) && title.getLength() > 0) {
                out.add(title.item(0).getTextContent());
            }
        }
        return out;
    }

    private static Document parse(String svg) throws Exception {
        DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
        f.setFeature("http://apache.org/xml/features/nonvalidating/load-external-dtd", false);
        return f.newDocumentBuilder().parse(new ByteArrayInputStream(svg.getBytes(StandardCharsets.UTF_8)));
    }

    @Test
    void everyFunctionGroupAndDmaBufEdgeIsInTheSvg() throws Exception {
        ExternalTool dot = ExternalTool.require("dot", INSTALL);
        try (TopoRig rig = TopoRig.onDefaultMachine()) {
            Topology t = Topology.of(rig.machine);
            String svg = new Graphviz(dot.path().toString(), Duration.ofSeconds(60)).svg(TopologyDot.render(t));
            Document doc = parse(svg);
            assertEquals("svg", doc.getDocumentElement().getTagName());
            Set<String> nodes = titles(doc, "node");
            Set<String> clusters = titles(doc, "cluster");
            Set<String> edges = titles(doc, "edge");
            for (PciFunction f : rig.machine.pci().functions()) {
                assertTrue(nodes.contains(f.name()), f.name() + " is no node of the SVG: " + nodes);
            }
            assertEquals(rig.machine.iommu().groups().size(), clusters.size(), clusters.toString());
            for (IommuGroup g : rig.machine.iommu().groups()) {
                assertTrue(clusters.contains("cluster_iommu_group_" + g.id()), "group " + g.id() + ": " + clusters);
            }
            assertEquals(2, t.dmaBufs().size());
            int bufEdges = 0;
            for (Topology.Buffer b : t.dmaBufs()) {
                String buf = TopologyDot.bufferNode(b);
                assertTrue(nodes.contains(buf), buf + ": " + nodes);
                assertTrue(edges.contains(TopologyDot.exporterNode(b) + "->" + buf), buf + " export edge: " + edges);
                for (Topology.Import i : b.importers()) {
                    assertTrue(edges.contains(buf + "->" + i.device()), buf + " import by " + i.device() + ": " + edges);
                    bufEdges++;
                }
            }
            assertEquals(3, bufEdges, "the PRIME export attached by both HCAs, the heap buffer by the second");
            assertTrue(edges.contains(TopoRig.GPU + "->" + TopoRig.HCA), "the BUS_ADDR path: " + edges);
            assertTrue(svg.contains("BUS_ADDR (distance 4)") && svg.contains("NOT_SUPPORTED"), "the map types are drawn");
        }
    }
}
