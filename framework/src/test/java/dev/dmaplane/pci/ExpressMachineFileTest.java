package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.TopologyLoader.Format;
import org.junit.jupiter.api.Test;

import static dev.dmaplane.pci.Machines.endpoint;
import static dev.dmaplane.pci.Machines.rootPortWith;
import static dev.dmaplane.pci.PciRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The machine file's {@code serial:}, {@code aer:} and {@code link:} keys of a PCI Express function: the Device
 * Serial Number (PCIe Base Spec 7.9.3), whether Advanced Error Reporting is there (7.8.4), the Max Link Speed and
 * Width (7.5.3.6); defaults as a real part, each bad value EINVAL naming its path.
 */
class ExpressMachineFileTest {
    private static final String EP = "pci.hostBridges[0].children[0].children[0]";

    private static PciTopology load(String extra) {
        return TopologyLoader.load(rootPortWith("", endpoint("01:00.0", extra)), Format.YAML);
    }

    private static void assertBad(String extra, String path, String value) {
        ErrnoException e = assertThrows(ErrnoException.class, () -> load(extra).close());
        assertEquals(Errno.EINVAL, e.errno(), e.getMessage());
        assertTrue(e.getMessage().contains(path + ": '" + value + "'"), e.getMessage());
    }

    @Test
    void defaultsAreAerASerialFromTheFunctionAndA16GtX16Link() {
        try (PciTopology t = load("")) {
            PciFunction ep = t.function("01:00.0");
            ConfigSpace cs = ep.configSpace();
            assertTrue(cs.findExtCapability(EXT_CAP_ID_ERR).isPresent());
            int dsn = cs.findExtCapability(EXT_CAP_ID_DSN).orElseThrow();
            assertEquals(0x1da0_0002, cs.read(dsn + DSN_UPPER, 4), "vendor and device");
            assertEquals(0x0000_0100, cs.read(dsn + DSN_LOWER, 4), "domain 0, bus 1, devfn 0");
            ConfigSpace rp = t.function("00:01.0").configSpace();
            assertEquals(0x0000_0008, rp.read(rp.findExtCapability(EXT_CAP_ID_DSN).orElseThrow() + DSN_LOWER, 4),
                    "the root port's serial differs: devfn 8");
            assertEquals(16 << 4 | 4, cs.read(0x50 + EXP_LNKCAP, 4) & 0x3ff);
            assertTrue(t.lspciVerbose(ep).contains("Device Serial Number 1d-a0-00-02-00-00-01-00\n"), t.lspciVerbose(ep));
        }
    }

    @Test
    void serialAerAndLinkAreTakenFromTheFile() {
        try (PciTopology t = load("serial: \"01-23-45-67-89-ab-cd-ef\"\naer: false\nlink: { speed: 8GT/s, width: 4 }")) {
            ConfigSpace cs = t.function("01:00.0").configSpace();
            assertTrue(cs.findExtCapability(EXT_CAP_ID_ERR).isEmpty());
            int dsn = cs.findExtCapability(EXT_CAP_ID_DSN).orElseThrow();
            assertEquals(0x0123_4567, cs.read(dsn + DSN_UPPER, 4));
            assertEquals(0x89ab_cdef, cs.read(dsn + DSN_LOWER, 4));
            assertEquals(4 << 4 | 3, cs.read(0x50 + EXP_LNKCAP, 4) & 0x3ff);
            assertTrue(cs.findExtCapability(EXT_CAP_ID_SECPCI).isPresent());
            assertTrue(cs.findExtCapability(EXT_CAP_ID_PL_16GT).isEmpty());
        }
        try (PciTopology t = load("serial: \"0xfedcba9876543210\"")) {
            ConfigSpace cs = t.function("01:00.0").configSpace();
            assertEquals(0xfedc_ba98, cs.read(cs.findExtCapability(EXT_CAP_ID_DSN).orElseThrow() + DSN_UPPER, 4));
        }
    }

    @Test
    void badValuesAreEinvalNamingTheirPath() {
        assertBad("serial: \"12345\"", EP + ".serial", "12345");
        assertBad("serial: \"0x1_0000_0000_0000_0000\"", EP + ".serial", "0x1_0000_0000_0000_0000");
        assertBad("aer: 3", EP + ".aer", "3");
        assertBad("link: { speed: 32GT/s }", EP + ".link.speed", "32GT/s");
        assertBad("link: { width: 3 }", EP + ".link.width", "3");
        assertBad("link: { width: 32 }", EP + ".link.width", "32");
        ErrnoException e = assertThrows(ErrnoException.class, () -> load("link: { lanes: 4 }").close());
        assertTrue(e.getMessage().contains(EP + ".link.lanes"), e.getMessage());
    }
}
