package dev.dmaplane.vfio;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mm.Prot;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciReset;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import static dev.dmaplane.hw.copyengine.CopyEngineRegs.*;
import static dev.dmaplane.vfio.VfioLayouts.*;
import static dev.dmaplane.vfio.VfioTestMachine.*;
import static dev.dmaplane.vfio.VfioUapi.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code VFIO_DEVICE_PCI_HOT_RESET} with group fds as drivers/vfio/pci/vfio_pci_core.c answers it
 * ({@code vfio_pci_ioctl_pci_hot_reset}: argsz, flags, the zero-length array only for cdev-opened devices, ENODEV
 * without a bus reset; {@code vfio_pci_ioctl_pci_hot_reset_groups}: at most one fd per function the reset reaches,
 * EBADF, EINVAL for an fd that is no group; {@code vfio_pci_dev_set_hot_reset}: EINVAL unless every function of the
 * bus is in the device set and in a group the user passed), with the layout of {@code struct vfio_pci_hot_reset} in
 * include/uapi/linux/vfio.h. A reset reaches every function of the bus, zaps their BAR mappings, keeps their
 * configuration ({@code pci_reset_bus}).
 */
class HotResetTest {
    private final Machine machine = VfioTestMachine.boot();
    private final DeviceCore core = machine.devices();
    private final Vfio vfio = Vfio.of(machine);
    private final AddressSpace mm = machine.newAddressSpace("user");
    private final VfioUser user = vfio.open(mm, 64 << 20);
    private final Arena arena = Arena.ofConfined();
    private final List<String> resets = new CopyOnWriteArrayList<>();

    HotResetTest() {
        core.registerDriver(vfio.driver());
        for (String bdf : List.of(ENGINE, FN0, FN1)) {
            fn(bdf).addResetListener(kind -> {
                if (kind == PciReset.BUS) {
                    resets.add(bdf + " " + kind);
                }
            });
        }
    }

    @AfterEach
    void close() {
        arena.close();
        user.close();
        mm.close();
        machine.close();
    }

    private PciFunction fn(String bdf) {
        return machine.pci().function(bdf);
    }

    private void bindVfio(String bdf) {
        core.setDriverOverride(fn(bdf), "vfio-pci");
        core.reprobe(fn(bdf));
    }

    /** A user of {@code bdf}'s group with the type 1 IOMMU; returns the group. */
    private VfioGroup group(String bdf) {
        VfioContainer c = VfioContainer.open(user);
        VfioGroup g = VfioGroup.open(user, machine.iommu().groupOf(fn(bdf)).orElseThrow().id());
        g.setContainer(c);
        c.setIommu(VFIO_TYPE1v2_IOMMU);
        return g;
    }

    /** A {@code vfio_pci_hot_reset} with {@code argsz}, {@code flags}, {@code count} and the fds given. */
    private MemorySegment hotReset(int argsz, int flags, int count, int... fds) {
        MemorySegment s = arena.allocate(PCI_HOT_RESET.byteSize() + 4L * fds.length, 4);
        setU32(s, PCI_HOT_RESET, "argsz", argsz);
        setU32(s, PCI_HOT_RESET, "flags", flags);
        setU32(s, PCI_HOT_RESET, "count", count);
        for (int i = 0; i < fds.length; i++) {
            s.set(U32, PCI_HOT_RESET.byteSize() + 4L * i, fds[i]);
        }
        return s;
    }

    private long reset(VfioDevice d, int... groupFds) {
        return user.ioctl(d.fd(), VFIO_DEVICE_PCI_HOT_RESET, hotReset(12 + 4 * groupFds.length, 0, groupFds.length,
                groupFds));
    }

    @Test
    void theArgumentIsCheckedAsTheKernelChecksIt() {
        bindVfio(ENGINE);
        VfioGroup g = group(ENGINE);
        VfioDevice d = VfioDevice.open(g, ENGINE);
        int container = user.openContainer();
        fails(Errno.EINVAL, () -> user.ioctl(d.fd(), VFIO_DEVICE_PCI_HOT_RESET, hotReset(11, 0, 1, g.fd())), "argsz");
        fails(Errno.EINVAL, () -> user.ioctl(d.fd(), VFIO_DEVICE_PCI_HOT_RESET, hotReset(16, 1, 1, g.fd())), "flags");
        fails(Errno.EINVAL, () -> reset(d), "the zero-length array is for cdev-opened devices only");
        fails(Errno.EINVAL, () -> reset(d, g.fd(), g.fd()), "two fds, one function on the bus");
        fails(Errno.EFAULT, () -> user.ioctl(d.fd(), VFIO_DEVICE_PCI_HOT_RESET, hotReset(16, 0, 1)), "no room for the fd");
        fails(Errno.EBADF, () -> reset(d, 99), "fd 99 is not open");
        fails(Errno.EINVAL, () -> reset(d, container), "a container is no group");
        assertEquals(List.of(), resets, "nothing was reset");
    }

    @Test
    void everyFunctionOfTheBusMustBeInAGroupTheUserPassed() {
        bindVfio(ENGINE);
        bindVfio(FN0);
        VfioGroup engineGroup = group(ENGINE);
        VfioGroup nicGroup = group(FN0);
        VfioDevice d = VfioDevice.open(nicGroup, FN0);
        assertTrue(fn(FN1).driver().isEmpty(), "02:00.1 has no driver: the group is viable");
        fails(Errno.EINVAL, () -> reset(d, nicGroup.fd()), "02:00.1 is not bound to vfio-pci");
        bindVfio(FN1);
        fails(Errno.EINVAL, () -> reset(d, engineGroup.fd()), "the NICs' group was not passed");
        assertEquals(List.of(), resets, "nothing was reset");

        assertEquals(0, reset(d, nicGroup.fd()));
        assertEquals(List.of(FN0 + " " + PciReset.BUS, FN1 + " " + PciReset.BUS), resets, "both functions reset");
    }

    @Test
    void theResetZapsTheBarsKeepsTheConfigurationAndResetsTheDevice() {
        bindVfio(ENGINE);
        VfioGroup g = group(ENGINE);
        VfioDevice d = VfioDevice.open(g, ENGINE);
        long regs = d.mmap(0, 0, 0x8000, Prot.PROT_READ | Prot.PROT_WRITE);
        MemorySegment v = arena.allocate(8);
        v.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 0x10_0000L);
        mm.write(regs + REG_RING_BASE, v);
        assertTrue(mm.physAddr(regs).isPresent());
        int bar0 = fn(ENGINE).configSpace().read(0x10, 4);
        int command = fn(ENGINE).configSpace().read(0x04, 2);

        assertEquals(0, reset(d, g.fd()));

        assertEquals(List.of(ENGINE + " " + PciReset.BUS), resets);
        assertTrue(mm.physAddr(regs).isEmpty(), "the BAR mapping was zapped");
        assertEquals(bar0, fn(ENGINE).configSpace().read(0x10, 4), "pci_reset_bus restored the BAR");
        assertEquals(command, fn(ENGINE).configSpace().read(0x04, 2), "and the command register");
        mm.read(regs + REG_RING_BASE, v);
        assertEquals(0, v.get(ValueLayout.JAVA_LONG_UNALIGNED, 0), "the device itself started afresh");
        assertEquals(ID_VALUE, d.read(0, REG_ID, 8), "and decodes");
    }
}
