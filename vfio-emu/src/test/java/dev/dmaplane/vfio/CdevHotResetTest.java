package dev.dmaplane.vfio;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciReset;
import dev.dmaplane.vfio.iommufd.DeviceCdev;
import dev.dmaplane.vfio.iommufd.Iommufd;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import static dev.dmaplane.vfio.VfioLayouts.*;
import static dev.dmaplane.vfio.VfioTestMachine.*;
import static dev.dmaplane.vfio.VfioUapi.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

/**
 * The zero-length (cdev) form of {@code VFIO_DEVICE_PCI_HOT_RESET} as drivers/vfio/pci/vfio_pci_core.c answers it:
 * {@code vfio_pci_ioctl_pci_hot_reset} ("zero-length array is only for cdev opened devices":
 * {@code !!hdr.count == vfio_device_cdev_opened} is EINVAL both ways) and {@code vfio_pci_dev_set_hot_reset} with the
 * device's iommufd context: every function the reset reaches must be bound to vfio-pci and owned by that context,
 * bound to it or in an IOMMU group a device bound to it owns ({@code vfio_iommufd_get_dev_id} in
 * drivers/vfio/iommufd.c, {@code iommufd_ctx_has_group}), else EINVAL; with the layout of
 * {@code struct vfio_pci_hot_reset} of include/uapi/linux/vfio.h. Bus 3 holds a multi-function device whose
 * functions have ACS, so each is an IOMMU group of its own.
 */
class CdevHotResetTest {
    private static final String ACS0 = "0000:03:00.0";
    private static final String ACS1 = "0000:03:00.1";
    private static final String BUS3 = """
                    - bdf: "0000:00:03.0"
                      type: rootPort
                      vendor: "0x1da0"
                      device: "0x1000"
                      class: "0x060400"
                      acs: [SV, RR, CR, UF]
                      children:
                        - bdf: "0000:03:00.0"
                          type: endpoint
                          vendor: "0x1da0"
                          device: "0x0002"
                          class: "0x020000"
                          multifunction: true
                          acs: [SV, RR, CR, UF]
                          bars:
                            - { index: 0, size: 16KiB, kind: mmio }
                        - bdf: "0000:03:00.1"
                          type: endpoint
                          vendor: "0x1da0"
                          device: "0x0003"
                          class: "0x020000"
                          acs: [SV, RR, CR, UF]
                          bars:
                            - { index: 0, size: 16KiB, kind: mmio }
            """;

    private final Machine machine = VfioTestMachine.bootWith(BUS3);
    private final DeviceCore core = machine.devices();
    private final Vfio vfio = Vfio.of(machine);
    private final AddressSpace mm = machine.newAddressSpace("user");
    private final VfioUser user = vfio.open(mm, 64 << 20);
    private final Arena arena = Arena.ofConfined();
    private final List<String> resets = new CopyOnWriteArrayList<>();

    CdevHotResetTest() {
        core.registerDriver(vfio.driver());
        for (String bdf : List.of(ENGINE, FN0, FN1, ACS0, ACS1)) {
            fn(bdf).addResetListener(kind -> {
                if (kind == PciReset.BUS) {
                    resets.add(bdf);
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

    private long reset(DeviceCdev cdev, int... groupFds) {
        MemorySegment s = arena.allocate(PCI_HOT_RESET.byteSize() + 4L * groupFds.length, 4);
        setU32(s, PCI_HOT_RESET, "argsz", (int) s.byteSize());
        setU32(s, PCI_HOT_RESET, "count", groupFds.length);
        for (int i = 0; i < groupFds.length; i++) {
            s.set(U32, PCI_HOT_RESET.byteSize() + 4L * i, groupFds[i]);
        }
        return user.ioctl(cdev.fd(), VFIO_DEVICE_PCI_HOT_RESET, s);
    }

    @Test
    void aCdevPassesNoGroupsAndItsIommufdMustOwnEveryFunction() {
        bindVfio(FN0);
        Iommufd fd = Iommufd.open(user);
        DeviceCdev cdev = DeviceCdev.open(user, FN0);
        fails(Errno.EINVAL, () -> reset(cdev), "not bound to an iommufd yet");
        cdev.bind(fd);
        fails(Errno.EINVAL, () -> reset(cdev), "02:00.1 is not bound to vfio-pci: not in the device set");
        bindVfio(ENGINE);
        int group = user.openGroup(machine.iommu().groupOf(fn(ENGINE)).orElseThrow().id());
        fails(Errno.EINVAL, () -> reset(cdev, group), "group fds from a cdev-opened device");
        bindVfio(FN1);
        assertEquals(List.of(), resets, "nothing was reset");

        assertEquals(0, reset(cdev), "02:00.1 is unbound, but its group is the iommufd's (-ENOENT: owned)");
        assertEquals(List.of(FN0, FN1), resets, "both functions of the bus reset");
        cdev.close();
        fd.close();
    }

    @Test
    void aFunctionInAGroupOfNoDeviceOfTheIommufdIsNotOwned() {
        bindVfio(ACS0);
        bindVfio(ACS1);
        assertNotEquals(machine.iommu().groupOf(fn(ACS0)).orElseThrow(),
                machine.iommu().groupOf(fn(ACS1)).orElseThrow(), "ACS splits the functions' groups");
        Iommufd fd = Iommufd.open(user);
        DeviceCdev first = DeviceCdev.open(user, ACS0);
        first.bind(fd);
        fails(Errno.EINVAL, () -> reset(first), "03:00.1's group is not the iommufd's");
        Iommufd other = Iommufd.open(user);
        DeviceCdev second = DeviceCdev.open(user, ACS1);
        second.bind(other);
        fails(Errno.EINVAL, () -> reset(first), "03:00.1 is bound to another iommufd");
        assertEquals(List.of(), resets, "nothing was reset");
        second.close();
        DeviceCdev again = DeviceCdev.open(user, ACS1);
        again.bind(fd);
        assertEquals(0, reset(first), "both bound to the one iommufd");
        assertEquals(List.of(ACS0, ACS1), resets);
        again.close();
        first.close();
        other.close();
        fd.close();
    }
}
