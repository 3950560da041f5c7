package dev.dmaplane.vfio;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRegs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.Random;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static dev.dmaplane.vfio.VfioLayouts.*;
import static dev.dmaplane.vfio.VfioTestMachine.*;
import static dev.dmaplane.vfio.VfioUapi.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The vfio-pci device file as drivers/vfio/pci/vfio_pci_core.c answers it ({@code vfio_pci_ioctl_get_info},
 * {@code vfio_pci_core_get_region_info} with the sparse-mmap capability around the MSI-X table,
 * {@code vfio_pci_core_mmap}, {@code VFIO_DEVICE_RESET}), region reads and writes as drivers/vfio/pci/vfio_pci_rdwr.c
 * ({@code vfio_pci_bar_rw}: EINVAL past the BAR, the MSI-X table hidden), config space as
 * drivers/vfio/pci/vfio_pci_config.c virtualizes it (BAR sizing through {@code vfio_bar_fixup}, the command
 * register's Interrupt Disable virtual and the rest real, MSI and MSI-X not enabled by config writes, EFAULT outside
 * the space), and a user-space driver of the copy engine that works only through the device file and the container.
 */
class DeviceFileTest {
    private static final long MIB = 1 << 20;
    private static final int RW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
    private final Machine machine = VfioTestMachine.boot();
    private final DeviceCore core = machine.devices();
    private final Vfio vfio = Vfio.of(machine);
    private final AddressSpace mm = machine.newAddressSpace("user");
    private final VfioUser user = vfio.open(mm, 64 * MIB);
    private final Arena arena = Arena.ofConfined();
    private final PciFunction engine;
    private final IommuGroup iommuGroup;
    private final long pinsBefore = machine.memory().pinsOutstanding();
    private final VfioContainer container;
    private final VfioGroup group;

    DeviceFileTest() {
        core.registerDriver(vfio.driver());
        engine = (PciFunction) core.findDevice(ENGINE).orElseThrow();
        core.setDriverOverride(engine, "vfio-pci");
        core.reprobe(engine);
        iommuGroup = machine.iommu().groupOf(engine).orElseThrow();
        container = VfioContainer.open(user);
        group = VfioGroup.open(user, iommuGroup.id());
        group.setContainer(container);
        container.setIommu(VFIO_TYPE1v2_IOMMU);
    }

    @AfterEach
    void close() {
        arena.close();
        user.close();
        assertFalse(engine.busMasterEnabled(), "the last close disabled the device");
        assertEquals(pinsBefore, machine.memory().pinsOutstanding(), "no page pinned after close");
        assertEquals(0, vfio.pinnedPages());
        assertEquals(IommuDomainType.DMA, iommuGroup.domain().type());
        mm.close();
        machine.close();
    }

    @Test
    void deviceInfo() {
        VfioDevice d = VfioDevice.open(group, ENGINE);
        assertEquals(new DeviceInfo(VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET, 9, 5), d.info());
        MemorySegment s = arena.allocate(DEVICE_INFO);
        s.set(U32, 0, 15);
        fails(Errno.EINVAL, () -> user.ioctl(d.fd(), VFIO_DEVICE_GET_INFO, s), "argsz 15");
        fails(Errno.ENOTTY, () -> user.ioctl(d.fd(), VFIO_IOMMU_UNMAP_DMA, s), "not a device command");
    }

    @Test
    void regionInfoOfEveryIndex() {
        VfioDevice d = VfioDevice.open(group, ENGINE);
        int rwm = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP;
        assertEquals(new RegionInfo(0, rwm | VFIO_REGION_INFO_FLAG_CAPS, 64 * 1024, 0,
                List.of(new RegionInfo.SparseArea(0, 0x8000), new RegionInfo.SparseArea(0x9000, 0x7000))),
                d.regionInfo(0), "BAR0 around the MSI-X table's page at 0x8000");
        assertEquals(new RegionInfo(1, 0, 0, 1L << 40, List.of()), d.regionInfo(1), "BAR0's upper half");
        assertEquals(new RegionInfo(2, rwm, 2 * MIB, 2L << 40, List.of()), d.regionInfo(2));
        for (int i = 3; i <= VFIO_PCI_ROM_REGION_INDEX; i++) {
            assertEquals(0, d.regionInfo(i).size(), "absent region " + i);
            assertEquals(0, d.regionInfo(i).flags());
        }
        assertEquals(new RegionInfo(7, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE, 4096, 7L << 40,
                List.of()), d.regionInfo(VFIO_PCI_CONFIG_REGION_INDEX));
        fails(Errno.EINVAL, () -> d.regionInfo(VFIO_PCI_VGA_REGION_INDEX), "not VGA");
        fails(Errno.EINVAL, () -> d.regionInfo(9), "past the regions");

        MemorySegment s = arena.allocate(REGION_INFO);
        setU32(s, REGION_INFO, "argsz", (int) REGION_INFO.byteSize());
        assertEquals(0, user.ioctl(d.fd(), VFIO_DEVICE_GET_REGION_INFO, s));
        assertEquals(32 + 16 + 2 * 16, u32(s, REGION_INFO, "argsz"), "grown for the sparse-mmap capability");
        assertEquals(0, u32(s, REGION_INFO, "cap_offset"), "no chain in a buffer too small");
        setU32(s, REGION_INFO, "argsz", 31);
        fails(Errno.EINVAL, () -> user.ioctl(d.fd(), VFIO_DEVICE_GET_REGION_INFO, s), "argsz 31");
    }

    private int cfgRead(VfioDevice d, int offset, int size) {
        return (int) d.read(VFIO_PCI_CONFIG_REGION_INDEX, offset, size);
    }

    private void cfgWrite(VfioDevice d, int offset, int size, int value) {
        d.write(VFIO_PCI_CONFIG_REGION_INDEX, offset, size, value);
    }

    @Test
    void configSpaceIsVirtualizedAsVfioPciConfigDoes() {
        VfioDevice d = VfioDevice.open(group, ENGINE);
        assertEquals(0x0001_1da0, cfgRead(d, 0, 4));
        int hwBar0 = engine.configSpace().read(PciRegs.BASE_ADDRESS_0, 4);
        cfgWrite(d, PciRegs.BASE_ADDRESS_0, 4, -1);
        assertEquals(0xffff_0004, cfgRead(d, PciRegs.BASE_ADDRESS_0, 4), "64 KiB size mask, 64-bit");
        cfgWrite(d, PciRegs.BASE_ADDRESS_0 + 4, 4, -1);
        assertEquals(-1, cfgRead(d, PciRegs.BASE_ADDRESS_0 + 4, 4));
        cfgWrite(d, PciRegs.BASE_ADDRESS_0 + 8, 4, -1);
        assertEquals(0xffe0_000c, cfgRead(d, PciRegs.BASE_ADDRESS_0 + 8, 4), "2 MiB, 64-bit, prefetchable");
        assertEquals(0, cfgRead(d, PciRegs.ROM_ADDRESS, 4), "no ROM");
        assertEquals(hwBar0, engine.configSpace().read(PciRegs.BASE_ADDRESS_0, 4), "the real BAR is untouched");
        assertEquals(ID_VALUE, d.read(0, REG_ID, 8), "and still decodes");

        int cmd = cfgRead(d, PciRegs.COMMAND, 2);
        cfgWrite(d, PciRegs.COMMAND, 2, cmd | PciRegs.COMMAND_MASTER | PciRegs.COMMAND_INTX_DISABLE);
        assertTrue(engine.busMasterEnabled(), "Bus Master Enable reaches the function");
        assertEquals(0, engine.configSpace().command() & PciRegs.COMMAND_INTX_DISABLE, "Interrupt Disable is virtual");
        assertEquals(PciRegs.COMMAND_INTX_DISABLE, cfgRead(d, PciRegs.COMMAND, 2) & PciRegs.COMMAND_INTX_DISABLE);

        int msix = engine.configSpace().findCapability(PciRegs.CAP_ID_MSIX).orElseThrow();
        cfgWrite(d, msix + PciRegs.MSIX_FLAGS, 2, PciRegs.MSIX_FLAGS_ENABLE);
        assertFalse(engine.msix().orElseThrow().enabled(), "MSI-X is VFIO's to enable, not a config write's");
        assertEquals(0, cfgRead(d, msix + PciRegs.MSIX_FLAGS, 2) & PciRegs.MSIX_FLAGS_ENABLE);
        fails(Errno.EFAULT, () -> d.read(VFIO_PCI_CONFIG_REGION_INDEX, 4094, 4), "past the 4 KiB");
    }

    @Test
    void barReadsAndWritesStayInTheBarAndAwayFromTheMsixTable() {
        VfioDevice d = VfioDevice.open(group, ENGINE);
        fails(Errno.EINVAL, () -> d.read(0, 64 * 1024, 4), "past BAR0");
        fails(Errno.EINVAL, () -> d.read(1, 0, 4), "absent BAR");
        fails(Errno.EINVAL, () -> user.pread(d.fd(), arena.allocate(4), 9L << 40), "no region 9");
        long entry = engine.bar(0).orElseThrow().mmio().read(0x8000, 4);
        assertEquals(0xffff_ffffL, d.read(0, 0x8000, 4), "the MSI-X table reads all-ones");
        d.write(0, 0x8000, 4, 0x1234_5678);
        assertEquals(entry, engine.bar(0).orElseThrow().mmio().read(0x8000, 4), "and drops writes");
        MemorySegment tail = arena.allocate(16);
        assertEquals(8, user.pread(d.fd(), tail, 64 * 1024 - 8), "cut at the BAR's end");
        byte[] data = new byte[8192];
        new Random(5).nextBytes(data);
        d.write(2, 4096, MemorySegment.ofArray(data));
        MemorySegment back = arena.allocate(8192);
        d.read(2, 4096, back);
        assertArrayEquals(data, back.toArray(ValueLayout.JAVA_BYTE), "BAR2 is memory");
    }

    @Test
    void barMmapsLeaveOutTheMsixTable() {
        VfioDevice d = VfioDevice.open(group, ENGINE);
        long regs = d.mmap(0, 0, 0x8000, Prot.PROT_READ | Prot.PROT_WRITE);
        MemorySegment id = arena.allocate(8);
        mm.read(regs + REG_ID, id);
        assertEquals(ID_VALUE, id.get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
        fails(Errno.EINVAL, () -> d.mmap(0, 0x8000, 0x1000, Prot.PROT_READ), "the MSI-X table's page");
        fails(Errno.EINVAL, () -> d.mmap(0, 0, 0x10000, Prot.PROT_READ), "over the table");
        fails(Errno.EINVAL, () -> d.mmap(0, 0x9000, 0x8000, Prot.PROT_READ), "past the BAR");
        fails(Errno.EINVAL, () -> d.mmap(VFIO_PCI_CONFIG_REGION_INDEX, 0, 4096, Prot.PROT_READ), "config");
        fails(Errno.EINVAL, () -> d.mmap(1, 0, 4096, Prot.PROT_READ), "absent BAR");
        long vram = d.mmap(2, 0, 2 * MIB, Prot.PROT_READ | Prot.PROT_WRITE);
        mm.write(vram + 8192, MemorySegment.ofArray(new byte[]{1, 2, 3, 4}));
        assertEquals(0x0403_0201, d.read(2, 8192, 4));
        fails(Errno.EFAULT, () -> c().mapDma(vram, 0x10000, 4096, RW), "a VM_PFNMAP BAR mapping cannot be pinned");
        d.reset();
        mm.read(regs + REG_ID, id);
        assertEquals(ID_VALUE, id.get(ValueLayout.JAVA_LONG_UNALIGNED, 0), "faulted in again after the reset's zap");
        mm.munmap(regs, 0x8000);
        mm.munmap(vram, 2 * MIB);
    }

    private VfioContainer c() {
        return container;
    }

    /** A user-space driver: registers through the device file, DMA through the container's IOVAs. */
    @Test
    void aUserSpaceDriverCopiesThroughTheDeviceFileAndTheContainer() {
        VfioDevice d = VfioDevice.open(group, ENGINE);
        long ring = mm.mmapAnonymous(4096, Prot.PROT_READ | Prot.PROT_WRITE);
        long buf = mm.mmapAnonymous(256 * 1024, Prot.PROT_READ | Prot.PROT_WRITE);
        byte[] data = new byte[128 * 1024];
        new Random(21).nextBytes(data);
        mm.write(buf, MemorySegment.ofArray(data));
        container.mapDma(ring, 0x1000_0000L, 4096, RW);
        container.mapDma(buf, 0x2000_0000L, 256 * 1024, RW);

        cfgWrite(d, PciRegs.COMMAND, 2, cfgRead(d, PciRegs.COMMAND, 2) | PciRegs.COMMAND_MASTER);
        d.write(0, REG_CTRL, 8, CTRL_RESET);
        d.write(0, REG_RING_BASE, 8, 0x1000_0000L);
        d.write(0, REG_RING_SIZE, 8, 8);
        d.write(0, REG_CTRL, 8, CTRL_ENABLE);
        MemorySegment desc = arena.allocate(DESC_SIZE);
        desc.set(ValueLayout.JAVA_LONG_UNALIGNED, DESC_SRC, 0x2000_0000L);
        desc.set(ValueLayout.JAVA_LONG_UNALIGNED, DESC_DST, 0x2000_0000L + data.length);
        desc.set(ValueLayout.JAVA_INT_UNALIGNED, DESC_LEN, data.length);
        mm.write(ring, desc);
        d.write(0, REG_RING_TAIL, 8, 1);
        assertEquals(1, d.read(0, REG_COMPLETED, 8));
        byte[] back = new byte[data.length];
        mm.read(buf + data.length, MemorySegment.ofArray(back));
        assertArrayEquals(data, back);

        d.reset();
        assertEquals(0, d.read(0, REG_CTRL, 8), "the FLR reset the engine");
        d.close();
        assertFalse(engine.busMasterEnabled(), "closing the last device file stopped the function");
        fails(Errno.EBADF, () -> d.info());
    }

    /**
     * {@code vfio_pci_ioctl_get_pci_hot_reset_info}: the functions a bus reset affects with their groups; ENOSPC with
     * the count written back for a short buffer.
     */
    @Test
    void hotResetInfoNamesTheFunctionsOfTheBus() {
        VfioDevice d = VfioDevice.open(group, ENGINE);
        MemorySegment hdr = arena.allocate(HOT_RESET_INFO);
        hdr.set(U32, 0, (int) HOT_RESET_INFO.byteSize());
        fails(Errno.ENOSPC, () -> user.ioctl(d.fd(), VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, hdr), "no room for one");
        assertEquals(1, u32(hdr, HOT_RESET_INFO, "count"), "the count the user needs room for");
        MemorySegment full = arena.allocate(HOT_RESET_INFO.byteSize() + DEPENDENT_DEVICE.byteSize());
        full.set(U32, 0, (int) full.byteSize());
        assertEquals(0, user.ioctl(d.fd(), VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, full));
        assertEquals(1, u32(full, HOT_RESET_INFO, "count"));
        assertEquals(iommuGroup.id(), full.get(U32, 12));
        assertEquals(0, full.get(U16, 16), "segment");
        assertEquals(1, full.get(ValueLayout.JAVA_BYTE, 18), "bus 01");
        assertEquals(0, full.get(ValueLayout.JAVA_BYTE, 19), "devfn 00.0");
        hdr.set(U32, 0, 11);
        fails(Errno.EINVAL, () -> user.ioctl(d.fd(), VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, hdr), "argsz 11");
    }

    /** The driver lets the device go while its file is open: the file answers ENODEV. */
    @Test
    void anUnboundDevicesFileAnswersEnodev() {
        VfioDevice d = VfioDevice.open(group, ENGINE);
        core.unbind(engine);
        fails(Errno.ENODEV, d::info);
        fails(Errno.ENODEV, () -> d.read(0, 0, 8));
        fails(Errno.ENODEV, () -> d.mmap(0, 0, 4096, Prot.PROT_READ));
        assertEquals(IommuDomainType.DMA, iommuGroup.domain().type(), "the group left its container");
    }
}
