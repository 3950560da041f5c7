package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code lspci -x}, {@code -xxx} and {@code -xxxx} as pciutils' {@code lspci.c} prints them ({@code show_terse},
 * {@code show_hex_dump}) and {@code lib/dump.c} ({@code dump_init}) reads them back: a line naming the function,
 * then {@code "%02x:"} and 16 times {@code " %02x"} a line, then an empty line.
 */
class LspciHexTest {
    private PciTopology t;

    @BeforeEach
    void load() {
        t = TopologyLoader.defaultMachine();
    }

    @AfterEach
    void close() {
        t.close();
    }

    @Test
    void dashXPrintsTheHeaderLineThenSixtyFourBytesSixteenALine() {
        PciFunction gpu = t.function("03:00.0");
        List<String> lines = t.lspciHex(gpu, 64).lines().toList();
        assertEquals(6, lines.size(), lines.toString());
        assertEquals("03:00.0 3D controller: Device 1da0:0001", lines.get(0));
        assertTrue(lines.get(1).startsWith("00: a0 1d 01 00 "), lines.get(1));
        assertEquals("", lines.get(5), "lspci ends each function with an empty line");
        for (int row = 0; row < 4; row++) {
            String line = lines.get(1 + row);
            assertEquals(String.format("%02x:", row * 16), line.substring(0, 3));
            assertEquals(3 + 16 * 3, line.length(), "16 bytes as ' %02x', no trailing space: " + line);
            for (int i = 0; i < 16; i++) {
                int b = Integer.parseInt(line.substring(4 + 3 * i, 6 + 3 * i), 16);
                assertEquals(gpu.configSpace().read(row * 16 + i, 1), b, "byte " + (row * 16 + i));
            }
        }
    }

    @Test
    void xxxAndXxxxDumpTheWholeSpaceWithThreeDigitOffsetsPast0xff() {
        PciFunction rp = t.function("00:01.0");
        assertEquals(1 + 16 + 1, t.lspciHex(rp, 256).lines().count());
        List<String> all = t.lspciHex(rp, 4096).lines().toList();
        assertEquals(1 + 256 + 1, all.size());
        assertTrue(all.get(16).startsWith("f0: "), all.get(16));
        // the ACS extended capability header at 0x100: ID 0x000d, version 1, AER next at 0x108
        assertTrue(all.get(17).startsWith("100: 0d 00 81 10 "), all.get(17));
        assertTrue(all.get(256).startsWith("ff0: "), all.get(256));
    }

    @Test
    void everyPresentFunctionInBusOrderAndRevisionAsLspciShowsIt() {
        String dump = t.lspciHex(64);
        List<String> headers = dump.lines().filter(l -> !l.isEmpty() && !l.matches("[0-9a-f]+: .*")).toList();
        assertEquals(t.functions().stream().map(f -> String.format("%02x:%02x.%d", f.bdf().bus(), f.bdf().device(),
                f.bdf().function())).toList(), headers.stream().map(h -> h.substring(0, 7)).toList());

        try (PciTopology rev = TopologyLoader.load(Machines.rootPortWith("", Machines.endpoint("01:00.0", "revision: 58")),
                TopologyLoader.Format.YAML)) {
            assertTrue(rev.lspciHex(64).contains("01:00.0 Ethernet controller: Device 1da0:0002 (rev 3a)\n"));
        }
    }

    @Test
    void anEmptySlotIsNotListedAsLspciNeverSeesIt() {
        PciFunction nic = t.function("05:00.0");
        t.removeHardware(nic, "test");
        assertEquals("", t.lspciHex(nic, 64));
        assertFalse(t.lspciHex(4096).contains("05:00.0"));
    }

    @Test
    void otherDepthsAreEinvalNamingTheCount() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> t.lspciHex(128));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("128"), e.getMessage());
    }
}
