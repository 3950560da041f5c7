package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A bad machine file is reported as a compiler reports a bad source file (the GNU Coding Standards, "Formatting Error
 * Messages": {@code FILE:LINE:COLUMN: message}), at the offending key (an unknown key), the enclosing mapping (a
 * missing key) or the value (everything else), for errors the parser finds and for those found when the hierarchy is
 * built (a BDF used twice, as {@code drivers/pci/probe.c} would meet it). The message after the position is the
 * check's own text, starting with the entry's path.
 */
class MachineFilePositionTest {
    /** Line numbers below are this text's; the endpoint's BDF value is at 11:20, its BAR size at 17:25. */
    private static final String MACHINE = """
            memory: 1GiB
            pci:
              hostBridges:
                - children:
                    - bdf: "00:01.0"
                      type: rootPort
                      vendor: "0x1da0"
                      device: "0x1000"
                      class: "0x060400"
                      children:
                        - bdf: "01:00.0"
                          vendor: "0x1da0"
                          device: "0x0002"
                          class: "0x020000"
                          bars:
                            - index: 0
                              size: 1MiB
            """;
    private static final String EP = "pci.hostBridges[0].children[0].children[0]";

    @TempDir
    Path dir;

    private ErrnoException fails(String name, String text) throws IOException {
        Path file = Files.writeString(dir.resolve(name), text);
        return assertThrows(ErrnoException.class, () -> TopologyLoader.load(file).close());
    }

    private void assertAt(ErrnoException e, Errno errno, String name, int line, int column, String text) {
        assertEquals(errno, e.errno(), e.getMessage());
        String want = errno.name() + ": " + dir.resolve(name) + ":" + line + ":" + column + ": " + text;
        assertTrue(e.getMessage().startsWith(want), "want '" + want + "...', got '" + e.getMessage() + "'");
    }

    @Test
    void theGoodFileLoads() throws IOException {
        try (PciTopology t = TopologyLoader.load(Files.writeString(dir.resolve("m.yaml"), MACHINE))) {
            assertEquals(2, t.functions().size());
        }
    }

    @Test
    void anUnknownKeyIsReportedAtTheKey() throws IOException {
        String text = MACHINE.replace("class: \"0x020000\"\n", "class: \"0x020000\"\n              colour: red\n");
        assertAt(fails("m.yaml", text), Errno.EINVAL, "m.yaml", 15, 15, EP + ".colour: unknown key 'colour'");
    }

    @Test
    void aValueOfTheWrongTypeIsReportedAtTheValue() throws IOException {
        assertAt(fails("m.yaml", MACHINE.replace("vendor: \"0x1da0\"\n              device",
                        "vendor: true\n              device")), Errno.EINVAL, "m.yaml", 12, 23,
                EP + ".vendor: 'true' is not a number or a hex string");
    }

    @Test
    void aSizeWithABadUnitIsReportedAtTheValue() throws IOException {
        assertAt(fails("m.yaml", MACHINE.replace("size: 1MiB", "size: 1MB")), Errno.EINVAL, "m.yaml", 17, 25,
                EP + ".bars[0].size: '1MB' is not a size");
    }

    @Test
    void aBarSizeThatIsNoPowerOfTwoIsReportedAtTheValue() throws IOException {
        assertAt(fails("m.yaml", MACHINE.replace("size: 1MiB", "size: 3MiB")), Errno.EINVAL, "m.yaml", 17, 25,
                EP + ".bars[0].size: '0x300000' (0000:01:00.0 BAR 0) is not a power of two");
    }

    /** The duplicate is found when buses are numbered, after parsing: the position still comes with it. */
    @Test
    void aDuplicateBdfIsReportedAtTheSecondBdf() throws IOException {
        String text = MACHINE + """
                        - bdf: "00:01.0"
                          type: rootPort
                          vendor: "0x1da0"
                          device: "0x1000"
                          class: "0x060400"
                """;
        assertAt(fails("m.yaml", text), Errno.EEXIST, "m.yaml", 18, 16,
                "pci.hostBridges[0].children[1].bdf: 0000:00:01.0 is already used by pci.hostBridges[0].children[0]");
    }

    @Test
    void aBadBdfIsReportedAtTheValue() throws IOException {
        assertAt(fails("m.yaml", MACHINE.replace("\"01:00.0\"", "\"01:00.9\"")), Errno.EINVAL, "m.yaml", 11, 20,
                EP + ".bdf: '01:00.9' is not a BDF");
    }

    @Test
    void aMissingKeyIsReportedAtItsMapping() throws IOException {
        assertAt(fails("m.yaml", MACHINE.replace("              device: \"0x0002\"\n", "")), Errno.EINVAL, "m.yaml",
                11, 15, EP + ".device: required key is missing");
    }

    @Test
    void aBadEnumValueIsReportedAtTheValue() throws IOException {
        assertAt(fails("m.yaml", MACHINE.replace("type: rootPort", "type: rootport")), Errno.EINVAL, "m.yaml", 6, 17,
                "pci.hostBridges[0].children[0].type: 'rootport' is not one of: ");
    }

    @Test
    void jsonIsReportedAtTheSamePlaces() throws IOException {
        String json = """
                {"memory": "1GiB",
                 "pci": {"hostBridges": [{"children": [
                   {"bdf": "00:01.0", "type": "rootPort", "vendor": "0x1da0", "device": "0x1000", "class": "0x060400",
                    "colour": "red"}]}]}}
                """;
        assertAt(fails("m.json", json), Errno.EINVAL, "m.json", 4, 5,
                "pci.hostBridges[0].children[0].colour: unknown key 'colour'");
        assertAt(fails("m.json", json.replace("\"colour\": \"red\"", "\"bars\": [{\"index\": 0, \"size\": \"3MiB\"}]")),
                Errno.EINVAL, "m.json", 4, 35, "pci.hostBridges[0].children[0].bars[0].size: '0x300000'");
    }

    @Test
    void aFileThatIsNotYamlIsReportedAtTheSyntaxError() throws IOException {
        ErrnoException e = fails("m.yaml", "memory: [1GiB\npci: {\n");
        assertEquals(Errno.EINVAL, e.errno());
        assertEquals("EINVAL: " + dir.resolve("m.yaml")
                + ":2:4: machine file is not valid YAML: while parsing a flow sequence: expected ',' or ']', but got :",
                e.getMessage());
        assertAt(fails("m.yaml", "just some words\n"), Errno.EINVAL, "m.yaml", 1, 1,
                "machine file: expected a mapping, got string");
    }

    @Test
    void aFileThatDoesNotExistIsEnoentNamingThePath() {
        Path none = dir.resolve("none.yaml");
        ErrnoException e = assertThrows(ErrnoException.class, () -> TopologyLoader.load(none));
        assertEquals(Errno.ENOENT, e.errno());
        assertEquals("ENOENT: machine file " + none + " does not exist", e.getMessage());
    }
}
