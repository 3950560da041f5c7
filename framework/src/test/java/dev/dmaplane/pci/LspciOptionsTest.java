package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code lspci}'s options as pciutils 3.9 has them: {@code lspci.c} ({@code show_device}, {@code show_terse},
 * {@code -n}/{@code -nn}/{@code -D}/{@code -k}/{@code -x}), {@code ls-kernel.c} ({@code show_kernel}) and
 * {@code lib/filter.c} ({@code pci_filter_parse_slot}, {@code pci_filter_parse_id}, {@code pci_filter_match}). The
 * golden lines are those the real {@code lspci -F} prints for the default machine's dump; where {@code lspci} is
 * installed the model's output must equal it for every option set (skipped without it, unless
 * {@code -Ddmaplane.require.tools=lspci}).
 */
class LspciOptionsTest {
    /** Option sets whose output the real lspci prints identically from the dump. */
    private static final List<List<String>> ORACLE = List.of(List.of(), List.of("-n"), List.of("-nn"), List.of("-D"),
            List.of("-nnD"), List.of("-k"), List.of("-nnk"), List.of("-s", "4:0"), List.of("-s", "02:"),
            List.of("-s", ".1"), List.of("-s", "0000:04:00.0"), List.of("-s", ":0"), List.of("-s", "3"),
            List.of("-s", "*:*.0"), List.of("-d", "1da0:0002"), List.of("-d", ":1002"), List.of("-d", "1da0:"),
            List.of("-d", "::0604"), List.of("-d", "::06xx"), List.of("-nns", "03:00.0"), List.of("-n", "-s", "06:00.0"),
            List.of("-s", "03:00.0", "-x"), List.of("-xxx", "-d", ":0001"), List.of("-D", "-xxxx", "-s", "05:00.0"),
            List.of("-xx", "-s", "1:"), List.of("-k", "-d", "::0200", "-nn"));
    private PciTopology t;

    @TempDir
    Path dir;

    @BeforeEach
    void load() {
        t = TopologyLoader.defaultMachine();
    }

    @AfterEach
    void close() {
        t.close();
    }

    private String lspci(String... args) {
        return t.lspci(LspciOptions.parse("lspci", List.of(args)), fn -> List.of());
    }

    @Test
    void terseLinesInNamesNumbersAndBoth() {
        assertEquals("04:00.0 Ethernet controller: Device 1da0:0002\n", lspci("-s", "04:00.0"));
        assertEquals("04:00.0 0200: 1da0:0002\n", lspci("-n", "-s", "04:00.0"));
        assertEquals("0000:04:00.0 Ethernet controller [0200]: Device [1da0:0002]\n", lspci("-nnDs04:00.0"));
        assertEquals("03:00.0 3D controller: Device 1da0:0001\n\tSubsystem: Device 1da0:0001\n", lspci("-ks", "3:0.0"));
        assertEquals(10, lspci().lines().count(), "every function the dump holds");
    }

    @Test
    void filtersSelectAsLibFilterDoes() {
        assertEquals(List.of("02:00.0", "02:01.0"), slots(lspci("-s", "02:")));
        assertEquals(List.of("00:03.0"), slots(lspci("-s", "3")), "a lone number is the slot on any bus");
        assertEquals(List.of("02:01.0"), slots(lspci("-s", "2:1")));
        assertEquals(List.of("04:00.0", "05:00.0"), slots(lspci("-d", "1da0:0002")));
        assertEquals(List.of("06:00.0"), slots(lspci("-d", "::0108")));
        assertEquals(List.of("06:00.0"), slots(lspci("-d", "::01xx:02")), "NVMe's prog-if 02");
        assertEquals("", lspci("-s", ".1", "-d", ":0001"), "both filters must match");
    }

    @Test
    void kernelLinesNameTheBoundDriverAndTheMatchingModules() {
        String out = t.lspci(LspciOptions.parse("lspci", List.of("-k", "-s", "06:00.0")), fn -> List.of("nvme", "vfio-pci"));
        assertEquals("06:00.0 Non-Volatile memory controller: Device 1da0:0003\n\tSubsystem: Device 1da0:0003\n"
                + "\tKernel modules: nvme, vfio-pci\n", out);
    }

    @Test
    void hexDumpsFollowTheLineAndEndWithAnEmptyLine() {
        List<String> lines = lspci("-nn", "-x", "-s", "03:00.0").lines().toList();
        assertEquals("03:00.0 3D controller [0302]: Device [1da0:0001]", lines.getFirst());
        assertEquals(6, lines.size());
        assertEquals("", lines.getLast());
        assertEquals(t.lspciHex(t.function("03:00.0"), 4096), lspci("-xxxx", "03:00.0"));
    }

    @Test
    void badOptionsAreEinvalWithPciutilsWords() {
        assertBad("lspci: -s: Invalid slot number", "-s", "zz");
        assertBad("lspci: -s: Too many fields", "-s", "1:2:3:4");
        assertBad("lspci: -s: Invalid bus number", "-s", "100:00.0");
        assertBad("lspci: -s: Invalid function number", "-s", "00.8");
        assertBad("lspci: -d: At least two fields must be given", "-d", "1da0");
        assertBad("lspci: -d: Invalid vendor ID", "-d", "xyz:1");
        assertBad("lspci: -d: Invalid class code", "-d", "::12345");
        assertBad("lspci: option requires an argument -- 's'", "-s");
        assertBad("lspci: bad option '-y' (invalid option -- 'y')", "-y");
        assertBad("lspci: bad option ''", "");
        assertBad("lspci: bad option '-t' before '03:00.0'", "-t", "03:00.0");
        ErrnoException e = assertThrows(ErrnoException.class, () -> lspci("-v", "0000:42:00.0"));
        assertEquals(Errno.ENODEV, e.errno());
    }

    /** The real pciutils reading the model's dump prints, for every option set, what the model prints. */
    @Test
    void realLspciPrintsTheSameForEveryOptionSet() throws Exception {
        ExternalTool real = ExternalTool.require("lspci",
                "apt-get install pciutils (Debian, Ubuntu), dnf install pciutils (Fedora)");
        Path dump = Files.writeString(dir.resolve("dump"), t.lspciHex(ConfigSpace.SIZE));
        for (List<String> opts : ORACLE) {
            List<String> args = new ArrayList<>(List.of("-F", dump.toString()));
            args.addAll(opts);
            assertEquals(real.run(Duration.ofSeconds(60), args.toArray(String[]::new)),
                    lspci(opts.toArray(String[]::new)), "lspci " + String.join(" ", opts));
        }
    }

    private void assertBad(String message, String... args) {
        ErrnoException e = assertThrows(ErrnoException.class, () -> lspci(args), message);
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().startsWith("EINVAL: " + message + "; usage: lspci "), e.getMessage());
    }

    private static List<String> slots(String out) {
        return out.lines().map(l -> l.substring(0, l.indexOf(' '))).toList();
    }
}
