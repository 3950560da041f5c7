package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.Test;

import java.util.List;

import static dev.dmaplane.pci.PciRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The extended capabilities a real PCI Express part carries, at their PCIe Base Spec 6.x reset values: Advanced
 * Error Reporting (7.8.4, the defaults {@code drivers/pci/pcie/aer.c} finds), Device Serial Number (7.9.3), Secondary
 * PCI Express (7.7.3) and Physical Layer 16.0 GT/s (7.7.5) sized by the link width, and the one-vector MSI a root or
 * downstream port's services need ({@code drivers/pci/pcie/portdrv.c}).
 */
class ExtendedCapabilitiesTest {
    private static ConfigSpace.Builder rootPort() {
        return ConfigSpace.builder(0x8086, 0x347a, 0x060400).express(PciPortType.ROOT_PORT).busNumbers(0, 1, 1);
    }

    private static ConfigSpace.Builder endpoint() {
        return ConfigSpace.builder(0x15b3, 0x101b, 0x020700).express(PciPortType.ENDPOINT);
    }

    private static int aer(ConfigSpace cs) {
        return cs.findExtCapability(EXT_CAP_ID_ERR).orElseThrow();
    }

    @Test
    void aerResetsToTheSpecDefaultsWithStatusWriteOneToClear() {
        ConfigSpace cs = endpoint().build();
        int aer = aer(cs);
        assertEquals(0x100, aer, "the first extended capability of a function without ACS");
        assertEquals(2, (cs.read(aer, 4) >>> EXT_CAP_VER_SHIFT) & 0xF);
        assertEquals(0, cs.read(aer + ERR_UNCOR_STATUS, 4));
        assertEquals(0, cs.read(aer + ERR_UNCOR_MASK, 4));
        assertEquals(ERR_UNC_DLP | ERR_UNC_SURPDN | ERR_UNC_FCP | ERR_UNC_RX_OVER | ERR_UNC_MALF_TLP,
                cs.read(aer + ERR_UNCOR_SEVER, 4), "7.8.4.4: DLP, SDES, FCP, RxOF, MalfTLP fatal");
        assertEquals(ERR_COR_ADV_NFAT, cs.read(aer + ERR_COR_MASK, 4), "7.8.4.6: Advisory Non-Fatal masked");
        cs.write(aer + ERR_UNCOR_MASK, 4, -1);
        assertEquals(ERR_UNC_IMPLEMENTED, cs.read(aer + ERR_UNCOR_MASK, 4), "only implemented bits are writable");
        cs.write(aer + ERR_UNCOR_STATUS, 4, -1);
        assertEquals(0, cs.read(aer + ERR_UNCOR_STATUS, 4), "status is RW1C, software cannot set it");
        cs.write(aer + ERR_ROOT_COMMAND, 4, -1);
        assertEquals(0, cs.read(aer + ERR_ROOT_COMMAND, 4), "an endpoint has no Root Error Command");
    }

    @Test
    void rootPortHasRootErrorCommandAndStatus() {
        ConfigSpace cs = rootPort().build();
        int aer = aer(cs);
        cs.write(aer + ERR_ROOT_COMMAND, 4, -1);
        assertEquals(ERR_ROOT_CMD_ENABLES, cs.read(aer + ERR_ROOT_COMMAND, 4));
    }

    @Test
    void rootAndDownstreamPortsGetOneMsiVectorEndpointsNone() {
        ConfigSpace rp = rootPort().build();
        int msi = rp.findCapability(CAP_ID_MSI).orElseThrow();
        int flags = rp.read(msi + MSI_FLAGS, 2);
        assertEquals(0, flags & MSI_FLAGS_QMASK, "Multiple Message Capable: 1 vector");
        assertTrue(endpoint().build().findCapability(CAP_ID_MSI).isEmpty());
        ConfigSpace up = ConfigSpace.builder(0x1000, 0xc030, 0x060400).express(PciPortType.UPSTREAM)
                .busNumbers(1, 2, 3).build();
        assertTrue(up.findCapability(CAP_ID_MSI).isEmpty(), "an upstream port has no port services of its own");
    }

    @Test
    void serialNumberDefaultsFromTheIdsAndCanBeSet() {
        ConfigSpace cs = endpoint().build();
        int dsn = cs.findExtCapability(EXT_CAP_ID_DSN).orElseThrow();
        assertEquals(0x0000_0000, cs.read(dsn + DSN_LOWER, 4));
        assertEquals(0x15b3_101b, cs.read(dsn + DSN_UPPER, 4));
        ConfigSpace set = endpoint().serial(0x0102_0304_0506_0708L).build();
        int at = set.findExtCapability(EXT_CAP_ID_DSN).orElseThrow();
        assertEquals(0x0506_0708, set.read(at + DSN_LOWER, 4));
        assertEquals(0x0102_0304, set.read(at + DSN_UPPER, 4));
        set.write(at + DSN_LOWER, 4, 0);
        assertEquals(0x0506_0708, set.read(at + DSN_LOWER, 4), "read-only");
    }

    @Test
    void secondaryExpressAndPhysicalLayer16SizedByTheLinkWidth() {
        ConfigSpace x16 = endpoint().build();
        ConfigSpace x4 = endpoint().link(4, 4).build();
        int sec16 = x16.findExtCapability(EXT_CAP_ID_SECPCI).orElseThrow();
        int sec4 = x4.findExtCapability(EXT_CAP_ID_SECPCI).orElseThrow();
        // 7.7.3: Lane Equalization Control, one 16-bit register per lane
        assertEquals(sec16 + SECPCI_LANE_EQ_CTRL + 2 * 16, x16.findExtCapability(EXT_CAP_ID_PL_16GT).orElseThrow());
        assertEquals(sec4 + SECPCI_LANE_EQ_CTRL + 2 * 4, x4.findExtCapability(EXT_CAP_ID_PL_16GT).orElseThrow());
        x4.write(sec4 + SECPCI_LNKCTL3, 4, -1);
        assertEquals(0x3, x4.read(sec4 + SECPCI_LNKCTL3, 4), "Perform Equalization, Link Equalization Request Interrupt Enable");
        assertEquals(4 << 4 | 4, x4.read(0x50 + EXP_LNKSTA, 2) & 0x3ff, "trained at 16 GT/s x4");
    }

    @Test
    void slowerLinksLeaveOutWhatTheirSpeedDoesNotNeed() {
        ConfigSpace gen3 = endpoint().link(3, 8).build();
        assertTrue(gen3.findExtCapability(EXT_CAP_ID_SECPCI).isPresent(), "7.7.3: 8 GT/s and above");
        assertTrue(gen3.findExtCapability(EXT_CAP_ID_PL_16GT).isEmpty());
        ConfigSpace gen2 = endpoint().link(2, 1).build();
        assertTrue(gen2.findExtCapability(EXT_CAP_ID_SECPCI).isEmpty());
        assertEquals(List.of(EXT_CAP_ID_ERR, EXT_CAP_ID_DSN), gen2.capabilities().stream()
                .filter(ConfigSpace.Capability::extended).map(ConfigSpace.Capability::id).toList());
    }

    @Test
    void aerCanBeLeftOut() {
        ConfigSpace cs = endpoint().aer(false).build();
        assertTrue(cs.findExtCapability(EXT_CAP_ID_ERR).isEmpty());
        assertEquals(0x100, cs.findExtCapability(EXT_CAP_ID_DSN).orElseThrow());
    }

    @Test
    void badLinkSpeedOrWidthIsEinvalNamingIt() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> endpoint().link(5, 16));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("link speed 5"), e.getMessage());
        e = assertThrows(ErrnoException.class, () -> endpoint().link(4, 3));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("x3"), e.getMessage());
    }
}
