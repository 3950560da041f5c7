package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.Test;

import java.util.List;

import static dev.dmaplane.pci.PciRegs.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Config space as the PCI Local Bus and PCI Express Base specs lay it out and {@code include/uapi/linux/pci_regs.h}
 * names it: read-only ID registers, the Command register's Memory Space and Bus Master Enable bits, write masks, and
 * BAR sizing as {@code __pci_read_base} in {@code drivers/pci/probe.c} performs it (write all-ones, read back the
 * mask; a 64-bit BAR's upper dword is sized the same way).
 */
class ConfigSpaceTest {
    private static ConfigSpace endpoint() {
        return ConfigSpace.builder(0x1da0, 0x0001, 0x030200).revision(0xa1).subsystem(0x1da0, 0x0042)
                .express(PciPortType.ENDPOINT)
                .bar(0, 16L << 20, true, false)
                .bar(2, 16L << 30, true, true)
                .bar(4, 1L << 20, false, false)
                .msix(64, 0, 0x2000, 0x3000)
                .build();
    }

    /**
     * PCIe Base Spec 7.5.1.2.1: an Endpoint's prefetchable BARs are 64-bit. The builder refuses what the machine file
     * refuses ({@code BarRules}); a conventional function and a legacy endpoint may have a 32-bit prefetchable BAR.
     */
    @Test
    void anEndpointsPrefetchableBarMustBe64Bit() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> ConfigSpace.builder(0x1da0, 0x0001, 0x030200)
                .express(PciPortType.ENDPOINT).bar(2, 1L << 20, false, true).build());
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("BAR 2") && e.getMessage().contains("7.5.1.2.1"), e.getMessage());
        assertEquals(BASE_ADDRESS_MEM_PREFETCH, ConfigSpace.builder(0x1da0, 0x0001, 0x030200)
                .express(PciPortType.LEGACY_ENDPOINT).bar(2, 1L << 20, false, true).build()
                .read(BASE_ADDRESS_0 + 8, 4) & BASE_ADDRESS_MEM_PREFETCH);
        assertEquals(BASE_ADDRESS_MEM_PREFETCH, ConfigSpace.builder(0x1da0, 0x0001, 0x030200)
                .bar(2, 1L << 20, false, true).build().read(BASE_ADDRESS_0 + 8, 4) & BASE_ADDRESS_MEM_PREFETCH);
    }

    @Test
    void headerFieldsReadLittleEndian() {
        ConfigSpace cs = endpoint();
        assertEquals(0x0001_1da0, cs.read(VENDOR_ID, 4));
        assertEquals(0x1da0, cs.vendorId());
        assertEquals(0x0001, cs.deviceId());
        assertEquals(0x030200, cs.classCode());
        assertEquals(0xa1, cs.revision());
        assertEquals(0x030200a1, cs.read(CLASS_REVISION, 4));
        assertEquals(0x1da0, cs.subsystemVendorId());
        assertEquals(0x0042, cs.subsystemId());
        assertEquals(HEADER_TYPE_NORMAL, cs.headerType());
        assertFalse(cs.isMultifunction());
    }

    @Test
    void readOnlyRegistersIgnoreWrites() {
        ConfigSpace cs = endpoint();
        cs.write(VENDOR_ID, 4, 0xdeadbeef);
        cs.write(CLASS_REVISION, 4, 0xffffffff);
        cs.write(HEADER_TYPE, 1, 0xff);
        cs.write(SUBSYSTEM_VENDOR_ID, 4, 0);
        cs.write(CAPABILITY_LIST, 1, 0);
        assertEquals(0x1da0, cs.vendorId());
        assertEquals(0x0001, cs.deviceId());
        assertEquals(0x030200a1, cs.read(CLASS_REVISION, 4));
        assertEquals(HEADER_TYPE_NORMAL, cs.read(HEADER_TYPE, 1));
        assertEquals(0x0042_1da0, cs.read(SUBSYSTEM_VENDOR_ID, 4));
        assertEquals(0x40, cs.read(CAPABILITY_LIST, 1));
    }

    @Test
    void commandKeepsOnlyWritableBitsAndCarriesBusMasterEnable() {
        ConfigSpace cs = endpoint();
        assertFalse(cs.busMasterEnabled());
        assertFalse(cs.memorySpaceEnabled());
        cs.write(COMMAND, 2, 0xffff);
        assertEquals(COMMAND_MEMORY | COMMAND_MASTER | COMMAND_PARITY | COMMAND_SERR | COMMAND_INTX_DISABLE, cs.command());
        assertEquals(0, cs.command() & COMMAND_IO, "no I/O BARs, so I/O Space Enable is hard-wired to 0");
        cs.write(COMMAND, 2, COMMAND_MEMORY);
        assertTrue(cs.memorySpaceEnabled());
        assertFalse(cs.busMasterEnabled());
        cs.write(COMMAND, 1, COMMAND_MEMORY | COMMAND_MASTER);
        assertTrue(cs.busMasterEnabled());
    }

    @Test
    void statusKeepsCapListAndErrorBitsAreWriteOneToClear() {
        ConfigSpace cs = endpoint();
        cs.write(STATUS, 2, 0xffff);
        assertEquals(STATUS_CAP_LIST, cs.status(), "writing ones neither sets error bits nor clears Cap List");
    }

    @Test
    void thirtyTwoBitBarSizing() {
        ConfigSpace cs = endpoint();
        int reg = BASE_ADDRESS_0 + 4 * 4;
        cs.write(reg, 4, 0xC010_0000);
        assertEquals(0xC010_0000L, cs.barAddress(4));
        int saved = cs.read(reg, 4);
        cs.write(reg, 4, 0xffffffff);
        int mask = cs.read(reg, 4);
        assertEquals(0xFFF0_0000, mask, "1 MiB, 32-bit, non-prefetchable");
        assertEquals(1L << 20, (~(mask & BASE_ADDRESS_MEM_MASK) + 1) & 0xFFFF_FFFFL);
        cs.write(reg, 4, saved);
        assertEquals(0xC010_0000L, cs.barAddress(4));
    }

    /**
     * The BAR addresses a device model reads on every DMA (ModelDma's check for its own register BARs) follow each
     * change of the registers: a write, the hardware leaving and coming back (reads of an absent function return
     * all-ones, PCIe Base 2.3.2) and a reset to power-on values (PCIe Base 6.6).
     */
    @Test
    void barAddressFollowsWritesPresenceAndResets() {
        ConfigSpace cs = endpoint();
        int reg = BASE_ADDRESS_0 + 4 * 4;
        long powerOn = cs.barAddress(4);
        cs.write(reg, 4, 0xC010_0000);
        assertEquals(0xC010_0000L, cs.barAddress(4));
        cs.write(reg, 4, 0xC020_0000);
        assertEquals(0xC020_0000L, cs.barAddress(4), "the second address, not the first one kept");
        cs.setPresent(false);
        assertEquals(0xFFFF_FFFCL, cs.barAddress(4), "all-ones read back, decoded as an I/O BAR");
        cs.setPresent(true);
        assertEquals(0xC020_0000L, cs.barAddress(4));
        cs.resetToPowerOn();
        assertEquals(powerOn, cs.barAddress(4));
    }

    @Test
    void sixtyFourBitBarSizingUsesBothDwords() {
        ConfigSpace cs = endpoint();
        int lo = BASE_ADDRESS_0 + 4 * 2;
        int hi = lo + 4;
        assertEquals(BASE_ADDRESS_MEM_TYPE_64 | BASE_ADDRESS_MEM_PREFETCH, cs.read(lo, 4));
        cs.write(lo, 4, 0xffffffff);
        cs.write(hi, 4, 0xffffffff);
        assertEquals(0x0000_000C, cs.read(lo, 4), "16 GiB: no low address bit is writable; flags stay");
        assertEquals(0xFFFF_FFFC, cs.read(hi, 4));
        long mask = ((cs.read(hi, 4) & 0xFFFF_FFFFL) << 32) | (cs.read(lo, 4) & BASE_ADDRESS_MEM_MASK & 0xFFFF_FFFFL);
        assertEquals(16L << 30, -mask);
        cs.write(lo, 4, 0);
        cs.write(hi, 4, 0x104);
        assertEquals(0x104L << 32, cs.barAddress(2));

        int bar0 = BASE_ADDRESS_0;
        cs.write(bar0, 4, 0xffffffff);
        cs.write(bar0 + 4, 4, 0xffffffff);
        assertEquals(0xFF00_0004, cs.read(bar0, 4), "16 MiB, 64-bit, non-prefetchable");
        assertEquals(0xFFFF_FFFF, cs.read(bar0 + 4, 4));
    }

    @Test
    void unimplementedBarsReadZeroAndStayZero() {
        ConfigSpace cs = endpoint();
        int bar5 = BASE_ADDRESS_0 + 4 * 5;
        cs.write(bar5, 4, 0xffffffff);
        assertEquals(0, cs.read(bar5, 4));
    }

    @Test
    void capabilityListAndExtendedCapabilities() {
        ConfigSpace port = ConfigSpace.builder(0x1da0, 0x1002, 0x060400).express(PciPortType.DOWNSTREAM)
                .busNumbers(2, 3, 3).acs(Acs.PORT_DEFAULT_CAPABILITY, Acs.REQUIRED).build();
        List<ConfigSpace.Capability> caps = port.capabilities();
        assertEquals(List.of(new ConfigSpace.Capability(CAP_ID_PM, 0x40, false, 0),
                new ConfigSpace.Capability(CAP_ID_EXP, 0x50, false, 0),
                new ConfigSpace.Capability(CAP_ID_MSI, 0xa0, false, 0),
                new ConfigSpace.Capability(EXT_CAP_ID_ACS, 0x100, true, 1),
                new ConfigSpace.Capability(EXT_CAP_ID_ERR, 0x108, true, 2),
                new ConfigSpace.Capability(EXT_CAP_ID_DSN, 0x150, true, 1),
                new ConfigSpace.Capability(EXT_CAP_ID_SECPCI, 0x15c, true, 1),
                new ConfigSpace.Capability(EXT_CAP_ID_PL_16GT, 0x188, true, 1)), caps);
        assertEquals("Access Control Services", caps.get(3).name());
        assertEquals(0x50, port.findCapability(CAP_ID_EXP).orElseThrow());
        assertTrue(port.findCapability(CAP_ID_MSIX).isEmpty());
        assertEquals(PciPortType.DOWNSTREAM, port.portType().orElseThrow());
        assertEquals(Acs.REQUIRED, port.acsControl().orElseThrow());

        ConfigSpace ep = endpoint();
        assertEquals(0x90, ep.findCapability(CAP_ID_MSIX).orElseThrow());
        assertEquals(63, ep.read(0x90 + MSIX_FLAGS, 2) & MSIX_FLAGS_QSIZE);
        assertEquals(0x2000, ep.read(0x90 + MSIX_TABLE, 4));
        assertTrue(ep.acsControl().isEmpty());
        assertTrue(ep.findExtCapability(EXT_CAP_ID_ACS).isEmpty());
    }

    @Test
    void acsControlIsWritableOnlyWhereTheCapabilityImplementsTheBit() {
        ConfigSpace port = ConfigSpace.builder(0x1da0, 0x1000, 0x060400).express(PciPortType.ROOT_PORT)
                .busNumbers(0, 1, 1).acs(Acs.of(Acs.SV | Acs.RR), Acs.NONE).build();
        port.write(0x100 + ACS_CTRL, 2, 0xffff);
        assertEquals(Acs.of(Acs.SV | Acs.RR), port.acsControl().orElseThrow());
        port.write(0x100 + ACS_CAP, 2, 0xffff);
        assertEquals(Acs.of(Acs.SV | Acs.RR), port.acsCapability().orElseThrow());
    }

    @Test
    void msixEnableAndMaskAreTheOnlyWritableControlBits() {
        ConfigSpace ep = endpoint();
        ep.write(0x90 + MSIX_FLAGS, 2, 0xffff);
        assertEquals(MSIX_FLAGS_ENABLE | MSIX_FLAGS_MASKALL | 63, ep.read(0x90 + MSIX_FLAGS, 2));
    }

    @Test
    void bridgeHeaderHasReadOnlyBusNumbersAndEmptyWindows() {
        ConfigSpace br = ConfigSpace.builder(0x1da0, 0x1000, 0x060400).express(PciPortType.ROOT_PORT)
                .busNumbers(0, 1, 4).build();
        assertTrue(br.isBridgeHeader());
        assertEquals(0, br.primaryBus());
        assertEquals(1, br.secondaryBus());
        assertEquals(4, br.subordinateBus());
        br.write(PRIMARY_BUS, 4, 0x00ffffff);
        assertEquals(4, br.subordinateBus());
        assertTrue(br.memoryWindow().isEmpty());
        assertTrue(br.prefetchableWindow().isEmpty());
        br.write(PREF_MEMORY_BASE, 2, 0x0010);
        br.write(PREF_MEMORY_LIMIT, 2, 0x00f0);
        br.write(PREF_BASE_UPPER32, 4, 0x100);
        br.write(PREF_LIMIT_UPPER32, 4, 0x100);
        assertEquals(new ConfigSpace.Window(0x100_0010_0000L, 0x100_00ff_ffffL), br.prefetchableWindow().orElseThrow());
        assertEquals(PREF_RANGE_TYPE_64, br.read(PREF_MEMORY_BASE, 2) & 0xf, "64-bit decode type is read-only");
        ConfigSpace ep = endpoint();
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, ep::secondaryBus).errno());
    }

    @Test
    void badAccessesAreEinval() {
        ConfigSpace cs = endpoint();
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> cs.read(0, 3)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> cs.read(2, 4)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> cs.read(4096, 1)).errno());
        assertEquals(Errno.EINVAL, assertThrows(ErrnoException.class, () -> cs.write(-4, 4, 0)).errno());
        assertEquals(0, cs.read(4095, 1), "the last byte of extended space is readable");
    }

    @Test
    void builderRejectsInconsistentDevices() {
        assertThrows(ErrnoException.class, () -> ConfigSpace.builder(0xffff, 0, 0).build(), "vendor 0xffff means no device");
        ErrnoException cls = assertThrows(ErrnoException.class, () -> ConfigSpace.builder(0x1da0, 1, 0x030200)
                .express(PciPortType.ROOT_PORT).busNumbers(0, 1, 1).build());
        assertTrue(cls.getMessage().contains("0x030200"), cls.getMessage());
        assertThrows(ErrnoException.class, () -> ConfigSpace.builder(0x1da0, 1, 0x020000).bar(0, 3 << 20, true, true).build());
        assertThrows(ErrnoException.class, () -> ConfigSpace.builder(0x1da0, 1, 0x020000).bar(0, 2048, true, true).build());
        assertThrows(ErrnoException.class, () -> ConfigSpace.builder(0x1da0, 1, 0x020000).bar(5, 4096, true, true).build());
        assertThrows(ErrnoException.class, () -> ConfigSpace.builder(0x1da0, 1, 0x020000)
                .bar(0, 4096, true, true).bar(1, 4096, false, false).build());
        assertThrows(ErrnoException.class, () -> ConfigSpace.builder(0x1da0, 1, 0x020000)
                .bar(0, 8L << 30, false, false).build(), "8 GiB does not fit a 32-bit BAR");
        assertThrows(ErrnoException.class, () -> ConfigSpace.builder(0x1da0, 0x1002, 0x060400)
                .express(PciPortType.DOWNSTREAM).busNumbers(2, 3, 3).acs(Acs.of(Acs.SV), Acs.REQUIRED).build());
        assertThrows(ErrnoException.class, () -> ConfigSpace.builder(0x1da0, 1, 0x020000)
                .bar(0, 4096, true, true).msix(512, 0, 0, 0x2000).build(), "512 entries need 8 KiB, not 4 KiB");
    }
}
