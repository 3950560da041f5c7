package dev.dmaplane.runtime.topo;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.MapType;

import java.util.LinkedHashSet;
import java.util.Set;

/**
 * A {@link Topology} as a Graphviz DOT digraph: the PCI tree top down from each host bridge; each IOMMU group a
 * box ({@code cluster_iommu_group_N}) around its functions, labelled with its domain; on each port its ACS Control
 * bits ({@code ACS: SV RR CR UF}, {@code ACS: none enabled}, {@code no ACS}); on each function its driver; the
 * peer-to-peer paths as undirected edges labelled with {@code enum pci_p2pdma_map_type} ({@code BUS_ADDR} green,
 * {@code THRU_HOST_BRIDGE} blue dashed, {@code NOT_SUPPORTED} red dotted); each dma-buf a note
 * ({@code dmabuf_INO}) with an {@code exports} edge from its exporter and an {@code imports} edge to each attached
 * device. Node names are the BDFs, so {@code dot -Tsvg} keeps them as the SVG elements' titles.
 */
public final class TopologyDot {
    private TopologyDot() {
    }

    /**
     * The DOT text of {@code machine} now.
     *
     * @throws ErrnoException {@code EINVAL} for a null machine, {@code ENODEV} for a closed one
     */
    public static String render(Machine machine) {
        return render(Topology.of(machine));
    }

    /** The DOT text of {@code topology}. */
    public static String render(Topology topology) {
        ErrnoException.requireNonNull(topology, "topology");
        StringBuilder sb = new StringBuilder();
        sb.append("digraph dmaplane {\n");
        sb.append("  graph [label=").append(quote(topology.title()))
                .append(", labelloc=t, fontname=\"Helvetica\", fontsize=12, rankdir=TB, nodesep=0.4, ranksep=0.5];\n");
        sb.append("  node [fontname=\"Helvetica\", fontsize=10, shape=box, style=rounded];\n");
        sb.append("  edge [fontname=\"Helvetica\", fontsize=9];\n");
        for (Topology.Bridge h : topology.hostBridges()) {
            sb.append("  ").append(quote(h.name())).append(" [shape=box3d, label=")
                    .append(quote("host bridge " + h.name() + "\np2pdma whitelist: " + (h.p2pAllowed() ? "yes" : "no")))
                    .append("];\n");
        }
        Set<String> grouped = new LinkedHashSet<>();
        for (Topology.Group g : topology.groups()) {
            sb.append("  subgraph ").append(quote(clusterName(g))).append(" {\n");
            sb.append("    label=").append(quote("IOMMU group " + g.id() + "\ndomain " + g.domain() + " ("
                    + g.domainType() + ")")).append(";\n");
            sb.append("    style=\"rounded,dashed\"; color=\"gray40\"; fontname=\"Helvetica\"; fontsize=10;\n");
            for (Topology.PciDev f : topology.functions()) {
                if (g.members().contains(f.bdf())) {
                    sb.append("    ").append(node(f)).append('\n');
                    grouped.add(f.bdf());
                }
            }
            sb.append("  }\n");
        }
        for (Topology.PciDev f : topology.functions()) {
            if (!grouped.contains(f.bdf())) {
                sb.append("  ").append(node(f)).append('\n');
            }
        }
        for (Topology.PciDev f : topology.functions()) {
            sb.append("  ").append(quote(f.parent())).append(" -> ").append(quote(f.bdf())).append(" [arrowhead=none];\n");
        }
        for (Topology.PeerPath p : topology.peerPaths()) {
            sb.append("  ").append(quote(p.provider())).append(" -> ").append(quote(p.client())).append(" [")
                    .append(peerStyle(p)).append(", dir=none, constraint=false];\n");
        }
        Set<String> extraNodes = new LinkedHashSet<>();
        for (Topology.Buffer b : topology.dmaBufs()) {
            appendBuffer(sb, b, topology, extraNodes);
        }
        sb.append("}\n");
        return sb.toString();
    }

    /** The cluster of IOMMU group {@code g}: {@code cluster_iommu_group_N} (the prefix makes dot draw a box). */
    public static String clusterName(Topology.Group g) {
        return "cluster_iommu_group_" + g.id();
    }

    /** The node of dma-buf {@code b}: {@code dmabuf_INO}. */
    public static String bufferNode(Topology.Buffer b) {
        return "dmabuf_" + b.ino();
    }

    /** The exporter node of a buffer whose exporter is no device (a heap, udmabuf): {@code exporter_NAME}. */
    public static String exporterNode(Topology.Buffer b) {
        return b.exporterDevice().orElse("exporter_" + b.exporterName());
    }

    private static String node(Topology.PciDev f) {
        StringBuilder label = new StringBuilder(f.bdf()).append("\n").append(f.kind());
        label.append(String.format(" [%04x:%04x] class %06x", f.vendor(), f.device(), f.classCode()));
        f.model().ifPresent(m -> label.append("\nmodel ").append(m));
        if (f.bridge()) {
            label.append("\n").append(f.acs().map(a -> a.isEmpty() ? "ACS: none enabled" : "ACS: " + String.join(" ", a))
                    .orElse("no ACS"));
        }
        f.absence().ifPresentOrElse(a -> label.append("\nabsent: ").append(a),
                () -> label.append("\ndriver: ").append(f.driver().orElse("-")).append(f.busMaster() ? ", bus master" : ""));
        String style = f.absence().isPresent() ? "rounded,dashed" : f.driver().isPresent() ? "rounded,filled" : "rounded";
        return quote(f.bdf()) + " [label=" + quote(label.toString()) + ", style=" + quote(style)
                + (f.driver().isPresent() ? ", fillcolor=\"lightyellow\"" : "") + "];";
    }

    private static String peerStyle(Topology.PeerPath p) {
        String label = p.mapType() == MapType.NOT_SUPPORTED ? p.mapType().name()
                : p.mapType().name() + " (distance " + p.distance() + ")";
        String look = switch (p.mapType()) {
            case BUS_ADDR -> "color=\"forestgreen\", fontcolor=\"forestgreen\", style=bold";
            case THRU_HOST_BRIDGE -> "color=\"royalblue\", fontcolor=\"royalblue\", style=dashed";
            case NOT_SUPPORTED -> "color=\"firebrick\", fontcolor=\"firebrick\", style=dotted";
        };
        return "label=" + quote(label) + ", " + look;
    }

    /**
     * The buffer's note and edges; an exporter that is no device and an importer that is no PCI function get a node
     * of their own the first time, noted in {@code extraNodes}.
     */
    private static void appendBuffer(StringBuilder sb, Topology.Buffer b, Topology topology, Set<String> extraNodes) {
        String node = bufferNode(b);
        sb.append("  ").append(quote(node)).append(" [shape=note, style=filled, fillcolor=\"lavender\", label=")
                .append(quote("dma-buf ino " + b.ino() + "\n" + b.exporterName() + ", " + b.size() + " bytes\n"
                        + (b.dynamic() ? "dynamic" : "static") + " exporter"))
                .append("];\n");
        String exporter = exporterNode(b);
        if (b.exporterDevice().isEmpty() && extraNodes.add(exporter)) {
            sb.append("  ").append(quote(exporter)).append(" [shape=cylinder, label=")
                    .append(quote("exporter " + b.exporterName())).append("];\n");
        }
        sb.append("  ").append(quote(exporter)).append(" -> ").append(quote(node))
                .append(" [label=\"exports\", color=\"purple\", fontcolor=\"purple\", style=dashed];\n");
        for (Topology.Import i : b.importers()) {
            String target = i.device();
            boolean known = topology.functions().stream().anyMatch(f -> f.bdf().equals(target));
            if (!known && extraNodes.add(target)) {
                sb.append("  ").append(quote(target)).append(" [shape=ellipse];\n");
                i.function().ifPresent(fn -> sb.append("  ").append(quote(fn)).append(" -> ").append(quote(target))
                        .append(" [style=dotted, arrowhead=none];\n"));
            }
            sb.append("  ").append(quote(node)).append(" -> ").append(quote(target)).append(" [label=")
                    .append(quote("imports (" + (i.dynamic() ? "dynamic" : "static") + (i.peer2peer() ? ", p2p" : "") + ")"))
                    .append(", color=\"purple\", fontcolor=\"purple\"];\n");
        }
    }

    /** A DOT quoted string: quotes and backslashes escaped, a line break as the two characters DOT reads as one. */
    static String quote(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '\\', '"' -> sb.append('\\').append(c);
                case '\n' -> sb.append("\\n");
                default -> sb.append(c);
            }
        }
        return sb.append('"').toString();
    }
}
