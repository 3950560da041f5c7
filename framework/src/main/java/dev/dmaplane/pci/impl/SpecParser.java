package dev.dmaplane.pci.impl;

import com.fasterxml.jackson.databind.JsonNode;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.Acs;
import dev.dmaplane.pci.Bdf;
import dev.dmaplane.pci.MachineSpec;
import dev.dmaplane.pci.MachineSpec.AcsSpec;
import dev.dmaplane.pci.MachineSpec.BarKind;
import dev.dmaplane.pci.MachineSpec.BarSpec;
import dev.dmaplane.pci.MachineSpec.DefaultDomain;
import dev.dmaplane.pci.MachineSpec.ExpressSpec;
import dev.dmaplane.pci.MachineSpec.FunctionSpec;
import dev.dmaplane.pci.MachineSpec.HostBridgeSpec;
import dev.dmaplane.pci.MachineSpec.IommuSpec;
import dev.dmaplane.pci.MachineSpec.MsiSpec;
import dev.dmaplane.pci.MachineSpec.MsixSpec;
import dev.dmaplane.pci.PciPortType;
import dev.dmaplane.pci.PciRegs;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.regex.Pattern;
import java.util.Set;
import java.util.TreeSet;

/**
 * Turns the tree of a machine file into a {@link MachineSpec}, checking every key and scalar by hand so that
 * each error names the path of the bad entry. Structure across entries (buses, duplicates) is checked later,
 * when the topology is built.
 */
public final class SpecParser {
    private static final Set<String> MACHINE_KEYS = Set.of("memory", "iommu", "pci");
    private static final Set<String> IOMMU_KEYS = Set.of("enabled", "defaultDomain", "dirtyTracking");
    private static final Set<String> PCI_KEYS = Set.of("hostBridges");
    private static final Set<String> HOST_KEYS = Set.of("domain", "bus", "name", "p2pAllowed", "children");
    private static final Set<String> FUNCTION_KEYS = Set.of("bdf", "type", "vendor", "device", "class", "revision",
            "subsystemVendor", "subsystemDevice", "multifunction", "bars", "acs", "msix", "msi", "model", "properties", "children",
            "serial", "aer", "link");
    private static final Set<String> BAR_KEYS = Set.of("index", "size", "kind", "bits", "prefetchable");
    private static final Set<String> ACS_KEYS = Set.of("capability", "control");
    private static final Set<String> MSIX_KEYS = Set.of("vectors", "bar", "table", "pba");
    private static final Set<String> MSI_KEYS = Set.of("vectors", "64bit", "per-vector-mask");
    private static final Set<String> LINK_KEYS = Set.of("speed", "width");
    /** Link speeds by their Supported Link Speeds index (PCIe Base Spec 7.5.3.18), up to the 16 GT/s modelled. */
    private static final List<String> LINK_SPEEDS = List.of("2.5GT/s", "5GT/s", "8GT/s", "16GT/s");
    /** A serial as {@code lspci} prints it, eight bytes most significant first, or as a hex number. */
    private static final Pattern SERIAL_DASHED = Pattern.compile("[0-9a-fA-F]{2}(-[0-9a-fA-F]{2}){7}");
    private static final Pattern SERIAL_HEX = Pattern.compile("0[xX][0-9a-fA-F]{1,16}");
    private static final Map<String, PciPortType> TYPES = Map.of(
            "rootPort", PciPortType.ROOT_PORT, "upstreamPort", PciPortType.UPSTREAM,
            "downstreamPort", PciPortType.DOWNSTREAM, "endpoint", PciPortType.ENDPOINT,
            "legacyEndpoint", PciPortType.LEGACY_ENDPOINT, "rcEndpoint", PciPortType.RC_END);

    private SpecParser() {
    }

    /** A mapping at {@code path} whose keys were checked against the known set. */
    private record Obj(JsonNode node, String path) {
        static Obj of(JsonNode n, String path, Set<String> known) {
            if (n == null || !n.isObject()) {
                throw SpecException.at(Errno.EINVAL, path, (path.isEmpty() ? "machine file" : path)
                        + ": expected a mapping, got " + describe(n));
            }
            for (Iterator<String> it = n.fieldNames(); it.hasNext(); ) {
                String k = it.next();
                if (!known.contains(k)) {
                    throw SpecException.atKey(Errno.EINVAL, join(path, k), join(path, k) + ": unknown key '" + k + "' (known: "
                            + String.join(", ", new TreeSet<>(known)) + ")");
                }
            }
            return new Obj(n, path);
        }

        boolean has(String key) {
            JsonNode v = node.get(key);
            return v != null && !v.isNull();
        }

        JsonNode get(String key) {
            return node.get(key);
        }

        JsonNode required(String key) {
            if (!has(key)) {
                throw SpecException.at(Errno.EINVAL, at(key), at(key) + ": required key is missing");
            }
            return node.get(key);
        }

        String at(String key) {
            return join(path, key);
        }
    }

    private static String join(String path, String key) {
        return path.isEmpty() ? key : path + "." + key;
    }

    private static String describe(JsonNode n) {
        return n == null || n.isMissingNode() ? "nothing" : n.getNodeType().name().toLowerCase() + " " + n;
    }

    private static List<JsonNode> list(JsonNode n, String path) {
        if (!n.isArray()) {
            throw SpecException.at(Errno.EINVAL, path, path + ": expected a list, got " + describe(n));
        }
        List<JsonNode> out = new ArrayList<>();
        n.forEach(out::add);
        return out;
    }

    /** Parses a whole machine file tree. */
    public static MachineSpec parse(JsonNode root) {
        Obj m = Obj.of(root, "", MACHINE_KEYS);
        long memory = Units.size(m.required("memory"), "memory");
        if (memory <= 0 || memory % MachineSpec.MEMORY_GRANULE != 0) {
            throw Units.bad("memory", m.get("memory").asText(), "must be a positive multiple of 2MiB");
        }
        if (memory > MachineSpec.MAX_MEMORY) {
            throw Units.bad("memory", m.get("memory").asText(), "exceeds the limit of 1023GiB (0x"
                    + Long.toHexString(MachineSpec.MAX_MEMORY) + " bytes): RAM continues above the PCI hole at 4GiB and"
                    + " the physical address map decodes device memory from 1TiB");
        }
        IommuSpec iommu = m.has("iommu") ? iommu(Obj.of(m.get("iommu"), "iommu", IOMMU_KEYS)) : IommuSpec.DEFAULT;
        Obj pci = Obj.of(m.required("pci"), "pci", PCI_KEYS);
        List<HostBridgeSpec> hosts = new ArrayList<>();
        if (pci.has("hostBridges")) {
            List<JsonNode> items = list(pci.get("hostBridges"), "pci.hostBridges");
            for (int i = 0; i < items.size(); i++) {
                hosts.add(hostBridge(Obj.of(items.get(i), "pci.hostBridges[" + i + "]", HOST_KEYS)));
            }
        }
        return new MachineSpec(memory, iommu, hosts);
    }

    private static IommuSpec iommu(Obj o) {
        boolean enabled = !o.has("enabled") || Units.bool(o.get("enabled"), o.at("enabled"));
        DefaultDomain dd = DefaultDomain.DMA;
        if (o.has("defaultDomain")) {
            String t = Units.text(o.get("defaultDomain"), o.at("defaultDomain"));
            dd = switch (t) {
                case "dma" -> DefaultDomain.DMA;
                case "identity" -> DefaultDomain.IDENTITY;
                default -> throw Units.bad(o.at("defaultDomain"), t, "is not one of: dma, identity");
            };
        }
        boolean dirty = !o.has("dirtyTracking") || Units.bool(o.get("dirtyTracking"), o.at("dirtyTracking"));
        return new IommuSpec(enabled, dd, dirty);
    }

    private static HostBridgeSpec hostBridge(Obj o) {
        int domain = o.has("domain") ? (int) Units.number(o.get("domain"), o.at("domain"), 0xFFFF) : 0;
        int bus = o.has("bus") ? (int) Units.number(o.get("bus"), o.at("bus"), 0xFF) : 0;
        Optional<String> name = o.has("name") ? Optional.of(Units.text(o.get("name"), o.at("name"))) : Optional.empty();
        boolean p2p = o.has("p2pAllowed") && Units.bool(o.get("p2pAllowed"), o.at("p2pAllowed"));
        return new HostBridgeSpec(domain, bus, name, p2p, children(o));
    }

    private static List<FunctionSpec> children(Obj o) {
        List<FunctionSpec> out = new ArrayList<>();
        if (o.has("children")) {
            List<JsonNode> items = list(o.get("children"), o.at("children"));
            for (int i = 0; i < items.size(); i++) {
                out.add(function(Obj.of(items.get(i), o.at("children") + "[" + i + "]", FUNCTION_KEYS)));
            }
        }
        return out;
    }

    private static FunctionSpec function(Obj o) {
        JsonNode bdfNode = o.required("bdf");
        if (!bdfNode.isTextual()) {
            throw Units.bad(o.at("bdf"), bdfNode.asText(), "is not a BDF string; quote it, e.g. \"0000:03:00.0\"");
        }
        Bdf bdf;
        try {
            bdf = Bdf.parse(bdfNode.textValue());
        } catch (ErrnoException e) {
            throw Units.bad(o.at("bdf"), bdfNode.textValue(), "is not a BDF (want DDDD:BB:DD.F or BB:DD.F in hex)");
        }
        PciPortType type = PciPortType.ENDPOINT;
        if (o.has("type")) {
            String t = Units.text(o.get("type"), o.at("type"));
            type = TYPES.get(t);
            if (type == null) {
                throw Units.bad(o.at("type"), t, "is not one of: " + String.join(", ", new TreeSet<>(TYPES.keySet())));
            }
        }
        int vendor = (int) Units.number(o.required("vendor"), o.at("vendor"), 0xFFFE);
        int device = (int) Units.number(o.required("device"), o.at("device"), 0xFFFF);
        int cls = (int) Units.number(o.required("class"), o.at("class"), 0xFFFFFF);
        int rev = o.has("revision") ? (int) Units.number(o.get("revision"), o.at("revision"), 0xFF) : 0;
        int ssv = o.has("subsystemVendor") ? (int) Units.number(o.get("subsystemVendor"), o.at("subsystemVendor"), 0xFFFF) : 0;
        int ssd = o.has("subsystemDevice") ? (int) Units.number(o.get("subsystemDevice"), o.at("subsystemDevice"), 0xFFFF) : 0;
        boolean mf = o.has("multifunction") && Units.bool(o.get("multifunction"), o.at("multifunction"));
        List<BarSpec> bars = new ArrayList<>();
        if (o.has("bars")) {
            List<JsonNode> items = list(o.get("bars"), o.at("bars"));
            for (int i = 0; i < items.size(); i++) {
                bars.add(bar(Obj.of(items.get(i), o.at("bars") + "[" + i + "]", BAR_KEYS)));
            }
        }
        Optional<AcsSpec> acs = o.has("acs") ? Optional.of(acs(o.get("acs"), o.at("acs"))) : Optional.empty();
        Optional<MsixSpec> msix = o.has("msix")
                ? Optional.of(msix(Obj.of(o.get("msix"), o.at("msix"), MSIX_KEYS), bars)) : Optional.empty();
        Optional<MsiSpec> msi = o.has("msi")
                ? Optional.of(msi(Obj.of(o.get("msi"), o.at("msi"), MSI_KEYS))) : Optional.empty();
        Optional<String> model = o.has("model") ? Optional.of(Units.text(o.get("model"), o.at("model"))) : Optional.empty();
        Map<String, String> props = new LinkedHashMap<>();
        if (o.has("properties")) {
            JsonNode p = o.get("properties");
            if (!p.isObject()) {
                throw SpecException.at(Errno.EINVAL, o.at("properties"), o.at("properties") + ": expected a mapping, got "
                        + describe(p));
            }
            for (Iterator<Map.Entry<String, JsonNode>> it = p.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                if (!e.getValue().isValueNode() || e.getValue().isNull()) {
                    throw Units.bad(o.at("properties") + "." + e.getKey(), e.getValue().toString(), "is not a scalar value");
                }
                props.put(e.getKey(), e.getValue().asText());
            }
        }
        FunctionSpec fn = new FunctionSpec(bdf, type, vendor, device, cls, rev, ssv, ssd, mf, bars, acs, msix, msi,
                model, props, children(o), express(o));
        BarRules.check(fn, o.path());
        return fn;
    }

    private static BarSpec bar(Obj o) {
        int index = (int) Units.number(o.required("index"), o.at("index"), 5);
        long size = Units.size(o.required("size"), o.at("size"));
        BarKind kind = BarKind.MMIO;
        if (o.has("kind")) {
            String k = Units.text(o.get("kind"), o.at("kind"));
            kind = switch (k) {
                case "mmio" -> BarKind.MMIO;
                case "memory" -> BarKind.MEMORY;
                default -> throw Units.bad(o.at("kind"), k, "is not one of: mmio, memory");
            };
        }
        boolean is64 = true;
        if (o.has("bits")) {
            long bits = Units.number(o.get("bits"), o.at("bits"), 64);
            if (bits != 32 && bits != 64) {
                throw Units.bad(o.at("bits"), o.get("bits").asText(), "is not 32 or 64");
            }
            is64 = bits == 64;
        }
        // register BARs are non-prefetchable (reads have side effects; the NVMe spec requires it), so they land in
        // the 32-bit non-prefetchable window below 4 GiB; device memory is prefetchable when 64-bit
        boolean pref = o.has("prefetchable") ? Units.bool(o.get("prefetchable"), o.at("prefetchable"))
                : is64 && kind == BarKind.MEMORY;
        return new BarSpec(index, size, kind, is64, pref);
    }

    private static AcsSpec acs(JsonNode n, String path) {
        if (n.isArray()) {
            Acs control = flags(n, path);
            return new AcsSpec(Acs.PORT_DEFAULT_CAPABILITY.union(control), control);
        }
        Obj o = Obj.of(n, path, ACS_KEYS);
        Acs control = o.has("control") ? flags(o.get("control"), o.at("control")) : Acs.NONE;
        Acs cap = o.has("capability") ? flags(o.get("capability"), o.at("capability"))
                : Acs.PORT_DEFAULT_CAPABILITY.union(control);
        return new AcsSpec(cap, control);
    }

    private static Acs flags(JsonNode n, String path) {
        List<JsonNode> items = list(n, path);
        int bits = 0;
        for (int i = 0; i < items.size(); i++) {
            String at = path + "[" + i + "]";
            String name = Units.text(items.get(i), at);
            try {
                bits |= Acs.bitOf(name);
            } catch (ErrnoException e) {
                throw Units.bad(at, name, "is not an ACS flag (SV, TB, RR, CR, UF, EC, DT)");
            }
        }
        return Acs.of(bits);
    }

    private static MsixSpec msix(Obj o, List<BarSpec> bars) {
        int vectors = (int) Units.number(o.required("vectors"), o.at("vectors"), 2048);
        int bir = o.has("bar") ? (int) Units.number(o.get("bar"), o.at("bar"), 5) : 0;
        BarSpec bar = bars.stream().filter(b -> b.index() == bir).findFirst().orElseThrow(() ->
                Units.bad(o.at("bar"), String.valueOf(bir), "names no BAR of this function"));
        long table = o.has("table") ? Units.size(o.get("table"), o.at("table")) : bar.size() / 2;
        long pba = o.has("pba") ? Units.size(o.get("pba"), o.at("pba"))
                : table + (long) vectors * PciRegs.MSIX_ENTRY_SIZE;
        return new MsixSpec(vectors, bir, table, pba);
    }

    /** The {@code serial:}, {@code aer:} and {@code link:} keys of a function, each defaulting as a real part. */
    private static ExpressSpec express(Obj o) {
        ExpressSpec d = ExpressSpec.DEFAULT;
        OptionalLong serial = OptionalLong.empty();
        if (o.has("serial")) {
            String t = o.get("serial").isTextual() ? o.get("serial").textValue() : o.get("serial").toString();
            if (SERIAL_DASHED.matcher(t).matches()) {
                serial = OptionalLong.of(Long.parseUnsignedLong(t.replace("-", ""), 16));
            } else if (SERIAL_HEX.matcher(t).matches()) {
                serial = OptionalLong.of(Long.parseUnsignedLong(t.substring(2), 16));
            } else {
                throw Units.bad(o.at("serial"), t, "is not a 64-bit serial such as \"0x0011223344556677\" or"
                        + " \"00-11-22-33-44-55-66-77\"");
            }
        }
        boolean aer = !o.has("aer") || Units.bool(o.get("aer"), o.at("aer"));
        int speed = d.linkSpeed();
        int width = d.linkWidth();
        if (o.has("link")) {
            Obj l = Obj.of(o.get("link"), o.at("link"), LINK_KEYS);
            if (l.has("speed")) {
                String t = Units.text(l.get("speed"), l.at("speed"));
                int i = LINK_SPEEDS.indexOf(t);
                if (i < 0) {
                    throw Units.bad(l.at("speed"), t, "is not one of: " + String.join(", ", LINK_SPEEDS));
                }
                speed = i + 1;
            }
            if (l.has("width")) {
                width = (int) Units.number(l.get("width"), l.at("width"), 16);
                if (Integer.bitCount(width) != 1) {
                    throw Units.bad(l.at("width"), String.valueOf(width), "is not a link width of 1, 2, 4, 8 or 16 lanes");
                }
            }
        }
        return new ExpressSpec(serial, aer, speed, width);
    }

    /** The {@code msi:} section: Multiple Message Capable is log2 of the count, so a power of two up to 32. */
    private static MsiSpec msi(Obj o) {
        long vectors = o.has("vectors") ? Units.number(o.get("vectors"), o.at("vectors"), 32) : 1;
        if (vectors < 1 || Long.bitCount(vectors) != 1) {
            throw Units.bad(o.at("vectors"), String.valueOf(vectors), "is not a power of two in 1..32 (Multiple Message"
                    + " Capable holds its log2)");
        }
        boolean is64 = !o.has("64bit") || Units.bool(o.get("64bit"), o.at("64bit"));
        boolean mask = o.has("per-vector-mask") && Units.bool(o.get("per-vector-mask"), o.at("per-vector-mask"));
        return new MsiSpec((int) vectors, is64, mask);
    }
}
