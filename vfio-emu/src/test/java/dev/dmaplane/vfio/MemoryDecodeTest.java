package dev.dmaplane.vfio;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.errno.Errno;
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

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static dev.dmaplane.vfio.VfioTestMachine.*;
import static dev.dmaplane.vfio.VfioUapi.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Memory decoding turned off by the user through the config region, as drivers/vfio/pci/vfio_pci_config.c
 * ({@code vfio_basic_config_write}) and drivers/vfio/pci/vfio_pci_core.c ({@code vfio_pci_zap_bars},
 * {@code vfio_pci_mmap_huge_fault} with {@code __vfio_pci_memory_enabled}) and vfio_pci_rdwr.c
 * ({@code vfio_pci_bar_rw}: EIO) handle it: the BAR mappings lose their pages, a later load or store faults
 * ({@code SIGBUS}, EFAULT here) instead of reaching a BAR that does not decode, region reads and writes are EIO; once
 * the user sets Memory Space Enable again the next access faults the page in and sees the same device.
 */
class MemoryDecodeTest {
    private static final long MIB = 1 << 20;
    private final Machine machine = VfioTestMachine.boot();
    private final Vfio vfio = Vfio.of(machine);
    private final AddressSpace mm = machine.newAddressSpace("user");
    private final VfioUser user = vfio.open(mm, 64 * MIB);
    private final Arena arena = Arena.ofConfined();
    private final PciFunction engine;
    private final VfioDevice dev;

    MemoryDecodeTest() {
        DeviceCore core = machine.devices();
        core.registerDriver(vfio.driver());
        engine = (PciFunction) core.findDevice(ENGINE).orElseThrow();
        core.setDriverOverride(engine, "vfio-pci");
        core.reprobe(engine);
        VfioContainer container = VfioContainer.open(user);
        VfioGroup group = VfioGroup.open(user, machine.iommu().groupOf(engine).orElseThrow().id());
        group.setContainer(container);
        container.setIommu(VFIO_TYPE1v2_IOMMU);
        dev = VfioDevice.open(group, ENGINE);
    }

    @AfterEach
    void close() {
        arena.close();
        user.close();
        mm.close();
        machine.close();
    }

    private void memoryEnable(boolean on) {
        int cmd = (int) dev.read(VFIO_PCI_CONFIG_REGION_INDEX, PciRegs.COMMAND, 2);
        dev.write(VFIO_PCI_CONFIG_REGION_INDEX, PciRegs.COMMAND, 2,
                on ? cmd | PciRegs.COMMAND_MEMORY : cmd & ~PciRegs.COMMAND_MEMORY);
    }

    private long load(long addr) {
        MemorySegment s = arena.allocate(8);
        mm.read(addr, s);
        return s.get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
    }

    @Test
    void clearingMemorySpaceEnableZapsTheBarMappingsUntilItIsSetAgain() {
        long regs = dev.mmap(0, 0, 0x8000, Prot.PROT_READ | Prot.PROT_WRITE);
        long mem = dev.mmap(2, 0, 2 * MIB, Prot.PROT_READ | Prot.PROT_WRITE);
        mm.write(mem + 8192, MemorySegment.ofArray(new byte[]{1, 2, 3, 4, 5, 6, 7, 8}));
        assertEquals(ID_VALUE, load(regs + REG_ID), "the register page is present");
        assertTrue(mm.physAddr(regs).isPresent() && mm.physAddr(mem + 8192).isPresent(), "both pages are present");

        memoryEnable(false);
        assertFalse(engine.configSpace().memorySpaceEnabled(), "the write reached the function");
        assertTrue(mm.physAddr(regs).isEmpty() && mm.physAddr(mem + 8192).isEmpty(), "the BAR pages were zapped");
        fails(Errno.EFAULT, () -> load(regs + REG_ID), "a load from the register BAR is SIGBUS");
        fails(Errno.EFAULT, () -> load(mem + 8192), "a load from the memory BAR is SIGBUS");
        fails(Errno.EFAULT, () -> mm.write(mem, MemorySegment.ofArray(new byte[8])), "so is a store");
        fails(Errno.EIO, () -> dev.read(2, 8192, 8), "a region read is EIO");
        fails(Errno.EIO, () -> dev.write(0, REG_ID, 8, 0), "a region write is EIO");

        memoryEnable(true);
        assertEquals(ID_VALUE, load(regs + REG_ID), "the next access faults the register page in again");
        assertEquals(0x0807060504030201L, load(mem + 8192), "the memory BAR kept its bytes; the store changed none");
        assertEquals(0x0807060504030201L, dev.read(2, 8192, 8));
    }

    @Test
    void aWriteThatKeepsDecodingZapsNothing() {
        long regs = dev.mmap(0, 0, 0x8000, Prot.PROT_READ | Prot.PROT_WRITE);
        assertEquals(ID_VALUE, load(regs + REG_ID));
        int cmd = (int) dev.read(VFIO_PCI_CONFIG_REGION_INDEX, PciRegs.COMMAND, 2);
        dev.write(VFIO_PCI_CONFIG_REGION_INDEX, PciRegs.COMMAND, 2, cmd | PciRegs.COMMAND_MASTER);
        assertTrue(mm.physAddr(regs).isPresent(), "Memory Space Enable stayed set: the page stays");
        assertEquals(ID_VALUE, load(regs + REG_ID));
    }
}
