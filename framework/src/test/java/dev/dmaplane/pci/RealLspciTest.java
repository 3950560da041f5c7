package dev.dmaplane.pci;

import dev.dmaplane.testing.ExternalTool;
import dev.dmaplane.testing.TestMachines;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The real pciutils as the oracle: {@code lspci -xxxx} dumps of every function go through {@code lspci -F dump -vvv}
 * ({@code lib/dump.c} reads them, {@code lspci.c}, {@code ls-caps.c} and {@code ls-ecaps.c} decode them), and its
 * decode must agree with the model's own {@code lspci -vv} rendering field by field, with no broken capability chain
 * and no capability it cannot name. Runs where {@code lspci} is on the PATH and fails without it when
 * {@code -Ddmaplane.require.tools=lspci} (CI) asks for it.
 * <p>
 * What a dump cannot carry is left out: BAR sizes ({@code lib/dump.c} fills no {@code PCI_FILL_SIZES}, so lspci
 * prints no {@code [size=]} for regions), and pciutils 3.9 prints the upper dword of a 64-bit BAR read from a dump
 * as a region of its own (its {@code show_bases} walks every register when the OS gave no resource flags), which is
 * tolerated at exactly the index after a 64-bit BAR of the model.
 */
class RealLspciTest {
    private static final Pattern HEADER = Pattern.compile(
            "([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]) .* \\[([0-9a-f]{4})]: .*\\[([0-9a-f]{4}):([0-9a-f]{4})]"
                    + "( \\(rev ([0-9a-f]{2})\\))?( \\(prog-if ([0-9a-f]{2}).*)?");
    private static final Pattern REGION = Pattern.compile("Region (\\d+): .*");
    /** Model lines that have no counterpart in a config space dump: the kernel's and the model's own state. */
    private static final List<String> MODEL_ONLY = List.of("IOMMU group:", "Kernel driver in use:", "Device model:");
    /** Model lines the real lspci must print identically (after the normalisations below). */
    private static final List<String> EXACT = List.of("Control:", "Status: Cap", "Bus:", "Memory behind bridge:",
            "Prefetchable memory behind bridge:", "Secondary status:", "BridgeCtl:", "PriDiscTmr", "Capabilities:");

    @TempDir
    Path dir;

    @ParameterizedTest
    @ValueSource(strings = {TopologyLoader.DEFAULT_MACHINE_RESOURCE, TestMachines.SMALL_SWITCH})
    void realLspciDecodesEveryFunctionAsTheModelRendersIt(String machine) throws Exception {
        ExternalTool lspci = ExternalTool.require("lspci",
                "apt-get install pciutils (Debian, Ubuntu), dnf install pciutils (Fedora)");
        try (PciTopology t = machine.equals(TopologyLoader.DEFAULT_MACHINE_RESOURCE) ? TopologyLoader.defaultMachine()
                : TopologyLoader.load(TestMachines.text(machine), TopologyLoader.Format.YAML)) {
            Path dump = Files.writeString(dir.resolve("dump"), t.lspciHex(ConfigSpace.SIZE));
            String out = lspci.run(Duration.ofSeconds(60), "-F", dump.toString(), "-vvv", "-nn", "-D");
            assertFalse(out.contains("<chain broken>"), out);
            assertFalse(out.contains("!!!"), "lspci found the header inconsistent:\n" + out);
            for (String line : out.lines().filter(l -> l.strip().startsWith("Capabilities:")).toList()) {
                assertFalse(line.matches(".*\\] #[0-9a-f]{2}.*") || line.contains("Capability ID")
                        || line.contains("<unreadable>"), "a capability lspci cannot decode: " + line);
            }
            Map<String, List<String>> blocks = blocks(out);
            assertEquals(t.functions().stream().map(f -> f.bdf().toString()).toList(), List.copyOf(blocks.keySet()));
            for (PciFunction fn : t.functions()) {
                compare(fn, t.lspciVerbose(fn), blocks.get(fn.bdf().toString()));
            }
        }
    }

    /** lspci's output split at empty lines, by the function each paragraph describes. */
    private static Map<String, List<String>> blocks(String out) {
        Map<String, List<String>> blocks = new LinkedHashMap<>();
        List<String> current = null;
        for (String line : out.lines().toList()) {
            if (line.isEmpty()) {
                current = null;
            } else if (current == null) {
                current = new ArrayList<>();
                blocks.put(line.substring(0, line.indexOf(' ')), current);
                current.add(line);
            } else {
                current.add(line);
            }
        }
        return blocks;
    }

    private static void compare(PciFunction fn, String model, List<String> real) {
        String where = fn.bdf() + ":\n" + String.join("\n", real) + "\n--- model ---\n" + model;
        Matcher h = HEADER.matcher(real.getFirst());
        assertTrue(h.matches(), "header " + where);
        assertEquals(fn.classCode() >>> 8, Integer.parseInt(h.group(2), 16), "class " + where);
        assertEquals(fn.vendorId(), Integer.parseInt(h.group(3), 16), "vendor " + where);
        assertEquals(fn.deviceId(), Integer.parseInt(h.group(4), 16), "device " + where);
        assertEquals(fn.revision(), h.group(6) == null ? 0 : Integer.parseInt(h.group(6), 16), "revision " + where);
        assertEquals(fn.classCode() & 0xFF, h.group(8) == null ? 0 : Integer.parseInt(h.group(8), 16), "prog-if " + where);

        List<String> lines = real.stream().skip(1).map(RealLspciTest::normalise).toList();
        Set<Integer> modelRegions = new TreeSet<>();
        Set<Integer> upperHalves = new TreeSet<>();
        for (Bar bar : fn.bars()) {
            modelRegions.add(bar.index());
            if (bar.is64Bit()) {
                upperHalves.add(bar.index() + 1);
            }
        }
        for (String line : model.lines().skip(1).map(String::strip).toList()) {
            if (MODEL_ONLY.stream().anyMatch(line::startsWith)) {
                continue;
            }
            if (capabilityBody(model).contains(line)) {
                continue;
            }
            if (line.startsWith("Subsystem:")) {
                String ids = String.format("[%04x:%04x]", fn.subsystemVendorId(), fn.subsystemId());
                assertTrue(lines.stream().anyMatch(l -> l.startsWith("Subsystem:") && l.endsWith(ids)),
                        "subsystem " + ids + " " + where);
            } else if (line.startsWith("Region ")) {
                String expected = line.replaceAll(" \\[size=[^]]+]", "");
                assertTrue(lines.contains(expected), "'" + expected + "' " + where);
            } else if (EXACT.stream().anyMatch(line::startsWith)) {
                assertTrue(lines.contains(line), "'" + line + "' " + where);
            } else {
                fail("no rule compares the model's line '" + line + "' with lspci's; add one: " + where);
            }
        }
        for (String line : lines) {
            Matcher r = REGION.matcher(line);
            if (r.matches()) {
                int index = Integer.parseInt(r.group(1));
                assertTrue(modelRegions.contains(index) || upperHalves.contains(index),
                        "lspci sees a region the model does not have: '" + line + "' " + where);
            }
        }
        List<String> theirCaps = real.stream().filter(l -> l.startsWith("\tCapabilities:")).map(String::strip).toList();
        List<String> ourCaps = model.lines().filter(l -> l.startsWith("\tCapabilities:")).map(String::strip).toList();
        assertEquals(ourCaps, theirCaps, "capabilities " + where);
        for (String cap : ourCaps) {
            assertEquals(capability(real, cap), capability(model.lines().toList(), cap), cap + " " + where);
        }
    }

    /** Every line of the model's output that belongs to a capability's body. */
    private static Set<String> capabilityBody(String model) {
        Set<String> body = new TreeSet<>();
        boolean in = false;
        for (String line : model.lines().toList()) {
            if (line.startsWith("\tCapabilities:")) {
                in = true;
            } else if (line.startsWith("\t\t") && in) {
                body.add(line.strip());
            } else {
                in = false;
            }
        }
        return body;
    }

    /** The body of capability {@code header} in a {@code -vv} paragraph: its lines up to the next one at one tab. */
    private static List<String> capability(List<String> paragraph, String header) {
        List<String> body = new ArrayList<>();
        boolean in = false;
        for (String line : paragraph) {
            if (line.startsWith("\tCapabilities:")) {
                in = line.strip().equals(header);
            } else if (in && line.startsWith("\t\t")) {
                body.add(line);
            } else {
                in = false;
            }
        }
        return body;
    }

    /**
     * lspci's line with its {@code -vvv} extras taken off where the model prints {@code -vv}: a disabled bridge
     * window shows no addresses ({@code show_range} prints them only above verbosity 2).
     */
    private static String normalise(String line) {
        return line.strip().replaceAll(": [0-9a-f]+-[0-9a-f]+ \\[disabled]", ": [disabled]");
    }
}
