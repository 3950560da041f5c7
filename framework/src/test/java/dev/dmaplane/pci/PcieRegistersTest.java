package dev.dmaplane.pci;

import dev.dmaplane.testing.ExternalTool;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

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
     * The same registers through pciutils' decode ({@code ls-caps.c} {@code cap_express_dev}): what a user of the real {@code lspci -vvv} would read.
     */
    @Test
    void realLspciReadsThemAsAPcieFunction(@TempDir Path dir) throws Exception {
        ExternalTool lspci = ExternalTool.require("lspci", "apt-get install pciutils");
        Path dump = Files.writeString(dir.resolve("dump"), t.lspciHex(t.function("00:02.0"), ConfigSpace.SIZE));
        String port = lspci.run(Duration.ofSeconds(60), "-F", dump.toString(), "-vvv");
        for (String field : List.of("MaxReadReq 512 bytes", "NoSnoop+", "RlxdOrd+")) {
            assertTrue(port.contains(field), field + " in\n" + port);
        }
    }
}
