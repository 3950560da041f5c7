package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.TopologyLoader.Format;
import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

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

    /**
     * PCIe Base Spec 4.2.6 (Link Training) and 7.5.3.8: an 8 GT/s x8 root port and a 16 GT/s x4 endpoint train their
     * link at 8 GT/s x4, which the Link Status of both ends shows, before and after the endpoint's Function Level
     * Reset and a secondary bus reset (neither retrains to other values); Link Capabilities keep each end's maximum,
     * and the real {@code lspci -vvv} (pciutils {@code ls-caps.c}, {@code link_compare}) calls the endpoint's speed
     * downgraded.
     */
    @Test
    void theLinkTrainsToTheLesserSpeedAndWidthOfItsEnds(@TempDir Path dir) throws Exception {
        String yaml = rootPortWith("", endpoint("01:00.0", "link: { speed: 16GT/s, width: 4 }"))
                .replace("class: \"0x060400\"", "class: \"0x060400\"\n          link: { speed: 8GT/s, width: 8 }");
        try (PciTopology t = TopologyLoader.load(yaml, Format.YAML)) {
            PciFunction ep = t.function("01:00.0");
            PciFunction rp = t.function("00:01.0");
            for (int round = 0; round < 3; round++) {
                for (PciFunction f : List.of(ep, rp)) {
                    assertEquals(4 << 4 | 3, f.configSpace().read(0x50 + EXP_LNKSTA, 2) & (EXP_LNKSTA_NLW | EXP_LNKSTA_CLS),
                            f + " after " + round + " resets");
                }
                if (round == 0) {
                    ep.flr();
                } else {
                    rp.resetSecondaryBus();
                }
            }
            assertEquals(8 << 4 | 3, rp.configSpace().read(0x50 + EXP_LNKCAP, 4) & 0x3ff);
            assertEquals(4 << 4 | 4, ep.configSpace().read(0x50 + EXP_LNKCAP, 4) & 0x3ff);
            String epLine = "LnkSta:\tSpeed 8GT/s (downgraded), Width x4\n";
            assertTrue(t.lspciVerbose(rp).contains("LnkSta:\tSpeed 8GT/s, Width x4\n"), t.lspciVerbose(rp));
            assertTrue(t.lspciVerbose(ep).contains(epLine), t.lspciVerbose(ep));
            ExternalTool lspci = ExternalTool.require("lspci",
                    "apt-get install pciutils (Debian, Ubuntu), dnf install pciutils (Fedora)");
            Path dump = Files.writeString(dir.resolve("ep"), t.lspciHex(ep, ConfigSpace.SIZE));
            String out = lspci.run(Duration.ofSeconds(60), "-F", dump.toString(), "-vvv");
            assertTrue(out.contains(epLine), out);
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
