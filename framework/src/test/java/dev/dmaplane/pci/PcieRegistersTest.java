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
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static dev.dmaplane.pci.PciRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The PCI Express capability's reset values as a real 16 GT/s part shows them, section by section of the PCIe Base
 * Spec 6.x chapter 7.5.3, and as the kernel reads them ({@code pcie_get_speed_cap} in {@code drivers/pci/pci.c},
 * {@code pcie_wait_for_link} and {@code pciehp}'s link checks).
 */
class PcieRegistersTest {
    private PciTopology t;

    @BeforeEach
    void load() {
        t = TopologyLoader.defaultMachine();
    }

    @AfterEach
    void close() {
        t.close();
    }

    private static int exp(PciFunction fn) {
        return fn.configSpace().findCapability(CAP_ID_EXP).getAsInt();
    }

    private static int reg(PciFunction fn, int offset, int size) {
        return fn.configSpace().read(exp(fn) + offset, size);
    }

    private List<PciFunction> ports() {
        return t.functions().stream().filter(f -> f.isBridge() && (reg(f, EXP_FLAGS, 2) & EXP_FLAGS_SLOT) != 0).toList();
    }

    /**
     * 7.5.3.18 Link Capabilities 2: the Supported Link Speeds vector has a bit for every speed up to Max Link Speed
     * (which indexes it), so {@code pcie_get_speed_cap} finds 16 GT/s there instead of "unknown"; 7.5.3.19 Link
     * Control 2: Target Link Speed resets to the highest supported speed.
     */
    @Test
    void supportedLinkSpeedsMatchLinkCapabilitiesAndTargetIsTheHighest() {
        for (PciFunction fn : t.functions()) {
            int maxSpeed = reg(fn, EXP_LNKCAP, 4) & EXP_LNKCAP_SLS;
            int vector = reg(fn, EXP_LNKCAP2, 4) & EXP_LNKCAP2_SLS;
            assertEquals(4, maxSpeed, fn + " is a 16 GT/s part");
            assertEquals(0b11110, vector, fn + ": 2.5, 5, 8 and 16 GT/s");
            assertEquals(maxSpeed, 31 - Integer.numberOfLeadingZeros(vector), fn + ": the highest supported speed is Max Link Speed");
            assertEquals(maxSpeed, reg(fn, EXP_LNKCTL2, 2) & EXP_LNKCTL2_TLS, fn + ": Target Link Speed");
        }
    }

    /**
     * 7.7.3.3 Lane Error Status and 7.7.5.4 Local Data Parity Mismatch Status are RW1CS: sticky, so a Function Level
     * Reset and a hot (secondary bus) reset leave them as they are (6.6.2, 7.4), as they leave the AER logs; software
     * clears them by writing ones.
     */
    @Test
    void laneErrorStatusIsSticky() {
        PciFunction ep = t.functions().stream().filter(PciFunction::hasFlr).findFirst().orElseThrow();
        ConfigSpace cs = ep.configSpace();
        int lanes = cs.findExtCapability(EXT_CAP_ID_SECPCI).orElseThrow() + SECPCI_LANE_ERR;
        int parity = cs.findExtCapability(EXT_CAP_ID_PL_16GT).orElseThrow() + PL16_LOCAL_PARITY;
        cs.hardwareUpdate(lanes, 4, 0b1010, true);
        cs.hardwareUpdate(parity, 4, 0b0100, true);
        ep.flr();
        assertEquals(0b1010, cs.read(lanes, 4), "after FLR");
        assertEquals(0b0100, cs.read(parity, 4), "after FLR");
        ep.upstreamBridge().orElseThrow().resetSecondaryBus();
        assertEquals(0b1010, cs.read(lanes, 4), "after a hot reset");
        assertEquals(0b0100, cs.read(parity, 4), "after a hot reset");
        cs.write(lanes, 4, 0b0010);
        assertEquals(0b1000, cs.read(lanes, 4), "RW1C");
    }

    /**
     * 7.5.3.4 Device Control: Enable Relaxed Ordering and Enable No Snoop default to 1b and Max_Read_Request_Size to
     * 010b (512 bytes), also after a Function Level Reset returns the registers to their defaults.
     */
    @Test
    void deviceControlResetsToMaxReadRequest512WithNoSnoop() {
        for (PciFunction fn : t.functions()) {
            int devctl = reg(fn, EXP_DEVCTL, 2);
            assertEquals(512, 128 << ((devctl & EXP_DEVCTL_READRQ) >>> 12), fn + " MaxReadReq");
            assertNotEquals(0, devctl & EXP_DEVCTL_NOSNOOP_EN, fn + " NoSnoop+");
            assertNotEquals(0, devctl & EXP_DEVCTL_RELAX_EN, fn + " RlxdOrd+");
        }
        PciFunction nvme = t.function("06:00.0");
        nvme.configSpace().write(exp(nvme) + EXP_DEVCTL, 2, 0);
        nvme.flr();
        assertEquals(EXP_DEVCTL_RELAX_EN | EXP_DEVCTL_NOSNOOP_EN | EXP_DEVCTL_READRQ_512B, reg(nvme, EXP_DEVCTL, 2));
    }

    /**
     * 7.5.3.6 Link Capabilities Port Number and 7.5.3.9 Slot Capabilities Physical Slot Number, which "must be
     * globally unique within the chassis": every root and downstream port has its own, none of them 0.
     */
    @Test
    void everyPortHasItsOwnPhysicalSlotAndPortNumber() {
        List<PciFunction> ports = ports();
        assertEquals(5, ports.size(), "three root ports and the switch's two downstream ports");
        Set<Integer> slots = new HashSet<>();
        Set<Integer> portNumbers = new HashSet<>();
        for (PciFunction p : ports) {
            int slot = (reg(p, EXP_SLTCAP, 4) & EXP_SLTCAP_PSN) >>> 19;
            int port = (reg(p, EXP_LNKCAP, 4) & EXP_LNKCAP_PN) >>> 24;
            assertNotEquals(0, slot, p + " slot");
            assertTrue(slots.add(slot), p + " slot #" + slot + " taken twice");
            assertTrue(portNumbers.add(port), p + " port #" + port + " taken twice");
        }
        ErrnoException e = assertThrows(ErrnoException.class,
                () -> ConfigSpace.builder(0x1da0, 1, 0x060400).slotNumber(8192));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("8192"), e.getMessage());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class,
                () -> ConfigSpace.builder(0x1da0, 1, 0x060400).portNumber(256)).errno());
    }

    /**
     * 7.5.3.6: a Downstream Port that supports speeds above 5 GT/s sets Data Link Layer Link Active Reporting Capable
     * and Link Bandwidth Notification Capable; 7.5.3.8: its Link Status DLActive is set while the link to a device
     * below is up, and clear once the device is gone (hot unplug), until new hardware arrives.
     */
    @Test
    void downstreamPortsReportDataLinkLayerLinkActiveOnlyWithADeviceBelow() {
        for (PciFunction p : ports()) {
            int lnkcap = reg(p, EXP_LNKCAP, 4);
            assertNotEquals(0, lnkcap & EXP_LNKCAP_DLLLARC, p + " LLActRep+");
            assertNotEquals(0, lnkcap & EXP_LNKCAP_LBNC, p + " BwNot+");
            assertNotEquals(0, reg(p, EXP_LNKSTA, 2) & EXP_LNKSTA_DLLLA, p + " DLActive+ with a device below");
        }
        PciFunction rp = t.function("00:02.0");
        PciFunction nic = t.function("05:00.0");
        t.removeHardware(nic, "surprise removal");
        assertEquals(0, reg(rp, EXP_LNKSTA, 2) & EXP_LNKSTA_DLLLA, "DLActive- once the slot is empty");
        t.insertHardware(nic);
        assertNotEquals(0, reg(rp, EXP_LNKSTA, 2) & EXP_LNKSTA_DLLLA, "DLActive+ again with new hardware");
        assertEquals(0, reg(t.function("01:00.0"), EXP_LNKCAP, 4) & EXP_LNKCAP_DLLLARC,
                "an upstream port does not report its own link's state");
    }

    /**
     * The same registers through pciutils' decode ({@code ls-caps.c} {@code cap_express_link}, {@code cap_express_link2},
     * {@code cap_express_dev}, {@code cap_express_slot}): what a user of the real {@code lspci -vvv} would read.
     */
    @Test
    void realLspciReadsThemAsASixteenGigatransferPort(@TempDir Path dir) throws Exception {
        ExternalTool lspci = ExternalTool.require("lspci", "apt-get install pciutils");
        Path dump = Files.writeString(dir.resolve("dump"), t.lspciHex(t.function("00:02.0"), ConfigSpace.SIZE));
        String port = lspci.run(Duration.ofSeconds(60), "-F", dump.toString(), "-vvv");
        for (String field : List.of("LnkCap2: Supported Link Speeds: 2.5-16GT/s", "LnkCtl2: Target Link Speed: 16GT/s",
                "MaxReadReq 512 bytes", "NoSnoop+", "LLActRep+ BwNot+", "DLActive+", "Slot #4", "Port #4")) {
            assertTrue(port.contains(field), field + " in\n" + port);
        }
        t.removeHardware(t.function("05:00.0"), "surprise removal");
        Files.writeString(dump, t.lspciHex(t.function("00:02.0"), ConfigSpace.SIZE));
        String empty = lspci.run(Duration.ofSeconds(60), "-F", dump.toString(), "-vvv");
        assertTrue(empty.contains("DLActive-"), empty);
    }
}
