package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * ACS bit values of {@code include/uapi/linux/pci_regs.h} ({@code PCI_ACS_SV} 0x01 ... {@code PCI_ACS_DT} 0x40) and
 * {@code REQ_ACS_FLAGS} of {@code drivers/iommu/iommu.c}; port type values are {@code PCI_EXP_TYPE_*}.
 */
class AcsTest {
    @Test
    void bitValuesMatchPciRegs() {
        assertEquals(0x01, Acs.SV);
        assertEquals(0x02, Acs.TB);
        assertEquals(0x04, Acs.RR);
        assertEquals(0x08, Acs.CR);
        assertEquals(0x10, Acs.UF);
        assertEquals(0x20, Acs.EC);
        assertEquals(0x40, Acs.DT);
    }

    @Test
    void requiredIsSvRrCrUf() {
        assertEquals(0x1d, Acs.REQUIRED.bits());
        assertEquals(List.of("SV", "RR", "CR", "UF"), Acs.REQUIRED.names());
        assertTrue(Acs.REQUIRED.sv() && Acs.REQUIRED.rr() && Acs.REQUIRED.cr() && Acs.REQUIRED.uf());
        assertFalse(Acs.REQUIRED.tb() || Acs.REQUIRED.ec() || Acs.REQUIRED.dt());
    }

    @Test
    void namesRoundTripAndSetOperations() {
        Acs a = Acs.ofNames(List.of("rr", "CR", "dt"));
        assertEquals(Acs.RR | Acs.CR | Acs.DT, a.bits());
        assertEquals(a, Acs.of(a.bits()));
        assertFalse(a.containsAll(Acs.REQUIRED));
        assertTrue(a.union(Acs.REQUIRED).containsAll(Acs.REQUIRED));
        assertEquals(Acs.of(Acs.DT), a.minus(Acs.REQUIRED));
    }

    @Test
    void rendersLikeLspciAcsCtl() {
        assertEquals("SrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-",
                Acs.REQUIRED.toLspci());
    }

    @Test
    void unknownNameOrBitIsEinval() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> Acs.ofNames(List.of("SV", "XX")));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("'XX'"), e.getMessage());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> Acs.of(0x80)).errno());
    }

    @Test
    void portTypeValuesMatchPciExpType() {
        assertEquals(0x0, PciPortType.ENDPOINT.value());
        assertEquals(0x1, PciPortType.LEGACY_ENDPOINT.value());
        assertEquals(0x4, PciPortType.ROOT_PORT.value());
        assertEquals(0x5, PciPortType.UPSTREAM.value());
        assertEquals(0x6, PciPortType.DOWNSTREAM.value());
        assertEquals(0x7, PciPortType.PCI_BRIDGE.value());
        assertEquals(0x8, PciPortType.PCIE_BRIDGE.value());
        assertEquals(0x9, PciPortType.RC_END.value());
        assertEquals(0xa, PciPortType.RC_EC.value());
        assertEquals(PciPortType.DOWNSTREAM, PciPortType.of(6));
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> PciPortType.of(3)).errno());
        assertTrue(PciPortType.UPSTREAM.isBridge());
        assertFalse(PciPortType.RC_END.isBridge());
    }
}
