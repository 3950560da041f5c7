package dev.dmaplane.pci;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.TopologyLoader.Format;
import dev.dmaplane.testing.FuzzRuns;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * Fuzz targets of the machine-file loader ({@link TopologyLoader}) and of booting a {@link Machine} from what it
 * accepts. The file format is the one {@code default-machine.yaml} documents; the rule is the issue's: the loader
 * and the boot answer every input with a machine or an {@code ErrnoException}, within 2 s. Anything else is a
 * finding (Jazzer saves the input). {@link #text} feeds raw YAML or JSON text; {@link #mutated} takes a seed machine
 * (the default machine, {@code machine-seeds/}) and changes numbers, sizes, IDs, BDFs, names, counts and nesting,
 * so that most inputs get past the syntax into the checks of every field, bus numbering, BAR placement, the IOMMU
 * groups and the device models. Regression inputs are in {@code MachineFileFuzzTestInputs/<method>/}.
 */
class MachineFileFuzzTest {
    private static final ObjectMapper YAML = new YAMLMapper();
    private static final ObjectMapper JSON = new JsonMapper();
    private static final List<JsonNode> SEEDS = new ArrayList<>();
    /** The bound on one answer. */
    static final Duration LIMIT = Duration.ofSeconds(2);
    private static final FuzzRuns TEXT = new FuzzRuns("machine-file-text", LIMIT);
    private static final FuzzRuns MUTATED = new FuzzRuns("machine-file-mutated", LIMIT);

    /** Scalars a mutation puts where a scalar was: the words and values the format knows, and the edges of each. */
    private static final String[] WORDS = {"rootPort", "upstreamPort", "downstreamPort", "endpoint",
            "legacyEndpoint", "rcEndpoint", "mmio", "memory", "dma", "identity", "copyengine", "SV", "TB", "RR", "CR", "UF",
            "EC", "DT", "0x060400", "0x030200", "0x020000", "0x010802", "0x1da0", "0xffff", "0x0", "0x", "", " ",
            "2MiB", "1TiB", "0x7fffffffffe00000", "9223372036854775807TiB", "00:00.0", "ff:1f.7", "ffff:ff:1f.7",
            "00:20.0", "00:00.8", "0000:00:00.0"};
    private static final long[] NUMBERS = {0, 1, -1, 2, 5, 6, 31, 32, 64, 255, 256, 2048, 2049, 4095, 4096, 0xFFFF,
            0x10000, 1L << 20, 1L << 21, (1L << 21) + 1, 1L << 31, 1L << 32, 1L << 40, 1L << 48, 1L << 62,
            Long.MAX_VALUE, Long.MIN_VALUE, 0x7fff_ffff_ffe0_0000L};
    private static final String[] UNITS = {"", "B", "K", "KiB", "M", "MiB", "G", "GiB", "T", "TiB", "MB"};
    /** Keys a mutation may add, known ones mostly; one the format does not know. */
    private static final String[] KEYS = {"memory", "iommu", "pci", "hostBridges", "domain", "bus", "name",
            "p2pAllowed", "children", "bdf", "type", "vendor", "device", "class", "revision", "subsystemVendor",
            "subsystemDevice", "multifunction", "bars", "acs", "msix", "model", "properties", "index", "size",
            "kind", "bits", "prefetchable", "capability", "control", "vectors", "bar", "table", "pba", "enabled",
            "defaultDomain", "vramBar", "bogus"};

    @BeforeAll
    static void seedsAndWarmUp() throws JsonProcessingException {
        SEEDS.add(YAML.readTree(TopologyLoader.defaultMachineText()));
        SEEDS.add(YAML.readTree(resource("machine-seeds/small-switch.yaml")));
        SEEDS.add(JSON.readTree(resource("machine-seeds/two-hosts.json")));
        // the first boot loads the classes of the whole model: not part of any input's 2 s
        Machine.bootDefault().close();
    }

    @AfterAll
    static void report() {
        TEXT.report();
        MUTATED.report();
    }

    private static String resource(String name) {
        try (InputStream in = MachineFileFuzzTest.class.getResourceAsStream(name)) {
            if (in == null) {
                throw new IllegalStateException("test resource " + name + " is missing");
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Raw text, YAML or JSON as the last byte says, dma-debug on or off as the one before (FuzzedDataProvider). */
    @FuzzTest
    void text(FuzzedDataProvider data) {
        Format format = data.consumeBoolean() ? Format.JSON : Format.YAML;
        boolean dmaDebug = data.consumeBoolean();
        String text = data.consumeRemainingAsString();
        TEXT.run(() -> format + " text:\n" + text, () -> answer(text, format, dmaDebug));
    }

    /** A seed machine changed by up to 12 structural mutations, written out as YAML or JSON and loaded. */
    @FuzzTest
    void mutated(FuzzedDataProvider data) {
        JsonNode tree = data.pickValue(SEEDS).deepCopy();
        int n = data.consumeInt(1, 12);
        for (int i = 0; i < n && data.remainingBytes() > 0; i++) {
            tree = mutate(tree, data);
        }
        Format format = data.consumeBoolean() ? Format.JSON : Format.YAML;
        boolean dmaDebug = data.consumeBoolean();
        String text;
        try {
            text = (format == Format.JSON ? JSON : YAML).writeValueAsString(tree);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("a tree built in memory must serialise", e);
        }
        MUTATED.run(() -> format + " text:\n" + text, () -> answer(text, format, dmaDebug));
    }

    /** Loads, boots, walks what lspci shows of every function, shuts down. */
    private static String answer(String text, Format format, boolean dmaDebug) {
        PciTopology topology = TopologyLoader.load(text, format);
        try (Machine m = Machine.boot(topology, new Machine.Options(dmaDebug, 4))) {
            m.pci().lspciTree();
            for (PciFunction fn : m.pci().functions()) {
                m.pci().lspciVerbose(fn);
            }
        }
        return FuzzRuns.ACCEPTED;
    }

    /** A place in the tree: the container and the key or index of the value held there. */
    private record Slot(JsonNode container, String key, int index) {
        JsonNode value() {
            return key != null ? container.get(key) : container.get(index);
        }

        void set(JsonNode v) {
            if (key != null) {
                ((ObjectNode) container).set(key, v);
            } else {
                ((ArrayNode) container).set(index, v);
            }
        }

        void remove() {
            if (key != null) {
                ((ObjectNode) container).remove(key);
            } else {
                ((ArrayNode) container).remove(index);
            }
        }
    }

    private static void slots(JsonNode n, List<Slot> out) {
        if (n.isObject()) {
            for (Iterator<Map.Entry<String, JsonNode>> it = n.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                out.add(new Slot(n, e.getKey(), -1));
                slots(e.getValue(), out);
            }
        } else if (n.isArray()) {
            for (int i = 0; i < n.size(); i++) {
                out.add(new Slot(n, null, i));
                slots(n.get(i), out);
            }
        }
    }

    private static JsonNode mutate(JsonNode root, FuzzedDataProvider data) {
        List<Slot> all = new ArrayList<>();
        slots(root, all);
        if (all.isEmpty()) {
            return scalar(null, data);
        }
        Slot s = all.get(data.consumeInt(0, all.size() - 1));
        switch (data.consumeInt(0, 6)) {
            case 0, 1 -> s.set(scalar(s.key, data));
            case 2 -> s.remove();
            case 3 -> { // more of the same: a list entry repeated (root ports, functions, BARs, bridges)
                if (s.container.isArray()) {
                    ArrayNode list = (ArrayNode) s.container;
                    int copies = data.consumeInt(1, 32);
                    for (int k = 0; k < copies; k++) {
                        list.add(s.value().deepCopy());
                    }
                }
            }
            case 4 -> { // nesting: a copy of another subtree below this mapping, as children or in place
                Slot other = all.get(data.consumeInt(0, all.size() - 1));
                JsonNode copy = other.value().deepCopy();
                JsonNode children = s.value().get("children");
                if (s.value().isObject() && (children == null || children.isArray()) && data.consumeBoolean()) {
                    // only below a mapping whose children (if any) an earlier mutation left a list
                    ((ObjectNode) s.value()).withArray("children").add(copy);
                } else {
                    s.set(copy);
                }
            }
            case 5 -> { // a key added to a mapping, with a scalar or a copy of a subtree
                JsonNode target = s.value().isObject() ? s.value() : s.container;
                if (target.isObject()) {
                    String key = data.pickValue(KEYS);
                    ((ObjectNode) target).set(key, data.consumeBoolean() ? scalar(key, data)
                            : all.get(data.consumeInt(0, all.size() - 1)).value().deepCopy());
                }
            }
            default -> s.set(JsonNodeFactory.instance.textNode(data.consumeString(24)));
        }
        return root;
    }

    /** A scalar for {@code key}: mostly of the kind the key wants (a size, an ID, a BDF), at or past its edges. */
    private static JsonNode scalar(String key, FuzzedDataProvider data) {
        JsonNodeFactory f = JsonNodeFactory.instance;
        boolean fitting = key != null && data.consumeBoolean();
        if (fitting) {
            switch (key) {
                case "memory", "size", "table", "pba" -> {
                    return data.consumeBoolean()
                            ? f.textNode(data.consumeLong(0, 1L << 44) + data.pickValue(UNITS))
                            : f.textNode("0x" + Long.toHexString(data.consumeLong()));
                }
                case "bdf" -> {
                    return f.textNode(String.format(data.consumeBoolean() ? "%04x:%02x:%02x.%x" : "%2$02x:%3$02x.%4$x",
                            data.consumeInt(0, 0x1_0000), data.consumeInt(0, 0x100), data.consumeInt(0, 0x20),
                            data.consumeInt(0, 8)));
                }
                case "vendor", "device", "class", "revision", "subsystemVendor", "subsystemDevice" -> {
                    return f.textNode("0x" + Long.toHexString(data.consumeLong(0, 0x1FF_FFFF)));
                }
                default -> {
                }
            }
        }
        return switch (data.consumeInt(0, 5)) {
            case 0 -> f.numberNode(data.pickValue(NUMBERS));
            case 1 -> f.numberNode(data.consumeLong());
            case 2 -> f.textNode(data.pickValue(WORDS));
            case 3 -> f.booleanNode(data.consumeBoolean());
            case 4 -> f.numberNode(data.consumeInt(0, 300));
            default -> f.nullNode();
        };
    }
}
