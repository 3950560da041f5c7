package dev.dmaplane.pci.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.pci.Bdf;
import dev.dmaplane.pci.MachineSpec;
import dev.dmaplane.pci.MachineSpec.FunctionSpec;
import dev.dmaplane.pci.MachineSpec.HostBridgeSpec;
import dev.dmaplane.pci.PciPortType;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Checks a machine's hierarchy and numbers its buses as {@code pci_scan_bridge} does when it assigns them:
 * depth-first in devfn order, each bridge's secondary bus above every bus numbered before it and its
 * subordinate bus the highest number below it. A bridge's secondary bus is the bus its children's BDFs name.
 * <p>
 * Rules, each failing with {@code EINVAL} naming the entry's path and BDF unless noted: a function lies in its
 * host bridge's domain and on its parent's bus; a BDF is used once ({@code EEXIST}); root ports sit on a root
 * bus, switch downstream ports below upstream ports, upstream ports below root or downstream ports; the link
 * below a root or downstream port carries device 0 only (the kernel's {@code only_one_child}); a function
 * other than 0 needs function 0 of its slot present and multi-function ({@code pci_scan_slot}); only bridges
 * have children; bus numbers stay within 0..255 ({@code ENOSPC}); BARs and MSI-X follow {@link BarRules}.
 */
public final class BusPlan {
    private BusPlan() {
    }

    /** A host bridge with its planned root-bus functions. */
    public record Host(HostBridgeSpec spec, String path, List<Node> children) {
    }

    /**
     * A function placed in the hierarchy.
     *
     * @param primary     the bus it sits on
     * @param secondary   for a bridge the bus below it, else -1
     * @param subordinate for a bridge the highest bus below it, else -1
     * @param children    the functions on its secondary bus, in devfn order
     */
    public record Node(FunctionSpec spec, String path, int primary, int secondary, int subordinate, List<Node> children) {
        public boolean isBridge() {
            return secondary >= 0;
        }
    }

    private static final Set<PciPortType> ON_ROOT_BUS = EnumSet.of(PciPortType.ROOT_PORT, PciPortType.ENDPOINT,
            PciPortType.LEGACY_ENDPOINT, PciPortType.RC_END, PciPortType.RC_EC);
    private static final Set<PciPortType> BELOW_PORT = EnumSet.of(PciPortType.UPSTREAM, PciPortType.ENDPOINT,
            PciPortType.LEGACY_ENDPOINT);
    private static final Set<PciPortType> BELOW_UPSTREAM = EnumSet.of(PciPortType.DOWNSTREAM);

    private final Map<Bdf, String> seen = new HashMap<>();
    private int maxBus;

    /** Validates the hierarchy of {@code machine} and numbers its buses. */
    public static List<Host> plan(MachineSpec machine) {
        BusPlan p = new BusPlan();
        Map<Integer, Integer> nextFree = new HashMap<>();
        Map<String, String> roots = new HashMap<>();
        List<Host> out = new ArrayList<>();
        List<HostBridgeSpec> hosts = machine.hostBridges();
        for (int i = 0; i < hosts.size(); i++) {
            HostBridgeSpec hb = hosts.get(i);
            String path = "pci.hostBridges[" + i + "]";
            String root = String.format("%04x:%02x", hb.domain(), hb.rootBus());
            String other = roots.putIfAbsent(root, path);
            if (other != null) {
                throw SpecException.at(Errno.EEXIST, path, path + ": root bus " + root + " is already declared by " + other);
            }
            int free = nextFree.getOrDefault(hb.domain(), 0);
            if (hb.rootBus() < free) {
                throw SpecException.at(Errno.EINVAL, path + ".bus", String.format(
                        "%s.bus: root bus %s lies inside the bus range an earlier host bridge of domain %04x uses (up to %02x)",
                        path, root, hb.domain(), free - 1));
            }
            p.maxBus = hb.rootBus();
            List<Node> children = p.level(hb.children(), path, hb.domain(), hb.rootBus(), null,
                    String.format("root bus %s of its host bridge", root));
            nextFree.put(hb.domain(), p.maxBus + 1);
            out.add(new Host(hb, path, children));
        }
        return List.copyOf(out);
    }

    private record Entry(FunctionSpec spec, String path) {
    }

    private List<Node> level(List<FunctionSpec> specs, String parentPath, int domain, int bus, FunctionSpec parent,
                             String where) {
        List<Entry> entries = new ArrayList<>();
        for (int j = 0; j < specs.size(); j++) {
            FunctionSpec s = specs.get(j);
            String p = parentPath + ".children[" + j + "]";
            Bdf bdf = s.bdf();
            if (bdf.domain() != domain) {
                throw SpecException.at(Errno.EINVAL, p + ".bdf", String.format(
                        "%s.bdf: %s is not in domain %04x of its host bridge",
                        p, bdf, domain));
            }
            if (bdf.bus() != bus) {
                throw SpecException.at(Errno.EINVAL, p + ".bdf", p + ".bdf: " + bdf + " is not on " + where);
            }
            String other = seen.putIfAbsent(bdf, p);
            if (other != null) {
                throw SpecException.at(Errno.EEXIST, p + ".bdf", p + ".bdf: " + bdf + " is already used by " + other);
            }
            checkPlacement(s, p, parent);
            BarRules.check(s, p);
            if (!s.type().isBridge() && !s.children().isEmpty()) {
                throw SpecException.at(Errno.EINVAL, p + ".children", p + ".children: " + bdf + " is a " + s.type().label()
                        + ", not a bridge, so it has no secondary bus for children");
            }
            entries.add(new Entry(s, p));
        }
        for (Entry e : entries) {
            Bdf bdf = e.spec.bdf();
            if (bdf.function() == 0) {
                continue;
            }
            boolean fn0 = specs.stream().anyMatch(s -> s.bdf().equals(bdf.withFunction(0)) && s.multifunction());
            if (!fn0) {
                throw SpecException.at(Errno.EINVAL, e.path + ".bdf", e.path + ".bdf: " + bdf + " is function " + bdf.function()
                        + ", but function 0 of its slot is missing or lacks multifunction: true"
                        + " (pci_scan_slot looks past function 0 only then)");
            }
        }
        entries.sort(Comparator.comparingInt(e -> e.spec.bdf().devfn()));
        List<Node> nodes = new ArrayList<>();
        for (Entry e : entries) {
            FunctionSpec s = e.spec;
            if (!s.type().isBridge()) {
                nodes.add(new Node(s, e.path, bus, -1, -1, List.of()));
                continue;
            }
            int secondary;
            if (s.children().isEmpty()) {
                secondary = maxBus + 1;
            } else {
                Bdf first = s.children().getFirst().bdf();
                secondary = first.bus();
                if (secondary <= maxBus) {
                    throw SpecException.at(Errno.EINVAL, e.path + ".children[0].bdf", String.format(
                            "%s.children[0].bdf: %s puts the secondary bus of %s at %02x, but buses up to %02x are"
                                    + " already numbered (buses are numbered depth-first in devfn order)",
                            e.path, first, s.bdf(), secondary, maxBus));
                }
            }
            if (secondary > 0xFF) {
                throw SpecException.at(Errno.ENOSPC, e.path,
                        e.path + ": no bus number is left for the secondary bus of " + s.bdf());
            }
            maxBus = secondary;
            List<Node> kids = level(s.children(), e.path, domain, secondary, s,
                    String.format("bus %02x, the secondary bus of its parent %s", secondary, s.bdf()));
            nodes.add(new Node(s, e.path, bus, secondary, maxBus, kids));
        }
        return List.copyOf(nodes);
    }

    private static void checkPlacement(FunctionSpec s, String path, FunctionSpec parent) {
        PciPortType t = s.type();
        Set<PciPortType> allowed;
        String where;
        if (parent == null) {
            allowed = ON_ROOT_BUS;
            where = "on a root bus";
        } else if (parent.type() == PciPortType.UPSTREAM) {
            allowed = BELOW_UPSTREAM;
            where = "below a switch upstream port";
        } else {
            allowed = BELOW_PORT;
            where = "below a " + parent.type().label();
        }
        if (!allowed.contains(t)) {
            throw SpecException.at(Errno.EINVAL, path + ".type", path + ".type: " + s.bdf() + " is a " + t.label()
                    + ", which cannot sit " + where);
        }
        if (parent != null && parent.type().isDownstreamPort() && s.bdf().device() != 0) {
            throw SpecException.at(Errno.EINVAL, path + ".bdf", String.format(
                    "%s.bdf: %s is device %02x, but the link below %s (a %s) carries device 00 only",
                    path, s.bdf(), s.bdf().device(), parent.bdf(), parent.type().label()));
        }
    }
}
