package dev.dmaplane.vfio;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static dev.dmaplane.vfio.VfioTestMachine.*;
import static dev.dmaplane.vfio.VfioUapi.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * vfio-pci and the group file: binding only by {@code driver_override} (drivers/vfio/pci/vfio_pci.c has an empty ID
 * table; drivers/base/driver.c {@code driver_set_override}), and drivers/vfio/group.c: one open of
 * {@code /dev/vfio/N}, {@code VFIO_GROUP_GET_STATUS} viability ({@code iommu_group_dma_owner_claimed}),
 * {@code VFIO_GROUP_SET_CONTAINER} (EBADF, EBADFD, EINVAL, and EPERM from {@code iommu_group_claim_dma_owner} in
 * drivers/iommu/iommu.c when the group is not viable), {@code VFIO_GROUP_UNSET_CONTAINER} and
 * {@code VFIO_GROUP_GET_DEVICE_FD}'s refusals.
 */
class GroupTest {
    private final Machine machine = VfioTestMachine.boot();
    private final DeviceCore core = machine.devices();
    private final Vfio vfio = Vfio.of(machine);
    private final VfioUser user = vfio.open(machine.newAddressSpace("user"), 1 << 20);
    private final Arena arena = Arena.ofConfined();

    /** A kernel driver of function 02:00.1 (1da0:0003), which uses the group's default domain. */
    private static final Driver NIC = new Driver() {
        @Override
        public String name() {
            return "nic";
        }

        @Override
        public MatchTable matchTable() {
            return MatchTable.of(MatchEntry.Pci.of(0x1da0, 0x0003));
        }

        @Override
        public BoundDevice probe(Device device, MatchEntry match) {
            return () -> { };
        }
    };

    GroupTest() {
        core.registerDriver(vfio.driver());
    }

    @AfterEach
    void close() {
        arena.close();
        user.close();
        machine.close();
    }

    private PciFunction fn(String bdf) {
        return (PciFunction) core.findDevice(bdf).orElseThrow();
    }

    private IommuGroup groupOf(String bdf) {
        return machine.iommu().groupOf(fn(bdf)).orElseThrow();
    }

    private void bindVfio(String bdf) {
        core.setDriverOverride(fn(bdf), "vfio-pci");
        assertTrue(core.reprobe(fn(bdf)));
    }

    private int status(int group) {
        MemorySegment s = arena.allocate(VfioLayouts.GROUP_STATUS);
        s.set(VfioLayouts.U32, 0, (int) VfioLayouts.GROUP_STATUS_MINSZ);
        assertEquals(0, user.ioctl(group, VFIO_GROUP_GET_STATUS, s));
        return VfioLayouts.u32(s, VfioLayouts.GROUP_STATUS, "flags");
    }

    private MemorySegment intArg(int fd) {
        MemorySegment s = arena.allocate(4);
        s.set(VfioLayouts.U32, 0, fd);
        return s;
    }

    @Test
    void vfioPciBindsOnlyByDriverOverride() {
        PciFunction engine = fn(ENGINE);
        assertTrue(engine.driver().isEmpty(), "no ID table row matches");
        fails(Errno.ENODEV, () -> core.bind(engine, vfio.driver()), "bind without override");
        bindVfio(ENGINE);
        assertSame(vfio.driver(), engine.driver().orElseThrow());
        fails(Errno.ENOENT, () -> user.openGroup(groupOf(FN0).id()), "no device of that group on vfio-pci");
    }

    @Test
    void aGroupOpensOnceAndReopensAfterClose() {
        bindVfio(ENGINE);
        int id = groupOf(ENGINE).id();
        int g = user.openGroup(id);
        fails(Errno.EBUSY, () -> user.openGroup(id), "second open");
        user.close(g);
        user.close(user.openGroup(id));
    }

    @Test
    void aGroupWithAMemberOnAKernelDriverIsNotViableAndCannotJoinAContainer() {
        bindVfio(FN0);
        core.registerDriver(NIC);
        assertTrue(fn(FN1).driver().isPresent(), "the NIC driver holds 02:00.1");
        int g = user.openGroup(groupOf(FN0).id());
        int c = user.openContainer();
        assertEquals(0, status(g), "not viable");
        assertTrue(fails(Errno.EPERM, () -> user.ioctl(g, VFIO_GROUP_SET_CONTAINER, intArg(c)))
                .getMessage().contains(FN1));
        assertEquals(IommuDomainType.DMA, groupOf(FN0).domain().type(), "nothing claimed");
        fails(Errno.EINVAL, () -> user.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, arena.allocateFrom(FN0)), "no container");

        core.unbind(fn(FN1), NIC);
        assertEquals(VFIO_GROUP_FLAGS_VIABLE, status(g), "an unbound member keeps the group viable");
        bindVfio(FN1);
        assertEquals(VFIO_GROUP_FLAGS_VIABLE, status(g), "so does one on vfio-pci");
        assertEquals(0, user.ioctl(g, VFIO_GROUP_SET_CONTAINER, intArg(c)));
        assertEquals(VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET, status(g));
        assertEquals(IommuDomainType.BLOCKED, groupOf(FN0).domain().type(), "claimed: DMA blocked until SET_IOMMU");
        user.close(g);
        assertEquals(IommuDomainType.DMA, groupOf(FN0).domain().type(), "closing the group gave it back");
    }

    @Test
    void setAndUnsetContainerRefusals() {
        bindVfio(ENGINE);
        int g = user.openGroup(groupOf(ENGINE).id());
        int c = user.openContainer();
        fails(Errno.EBADF, () -> user.ioctl(g, VFIO_GROUP_SET_CONTAINER, intArg(99)));
        fails(Errno.EBADFD, () -> user.ioctl(g, VFIO_GROUP_SET_CONTAINER, intArg(g)), "a group is no container");
        fails(Errno.EFAULT, () -> user.ioctl(g, VFIO_GROUP_SET_CONTAINER, arena.allocate(2)), "short int");
        fails(Errno.EINVAL, () -> user.ioctl(g, VFIO_GROUP_UNSET_CONTAINER, 0), "in no container");
        user.ioctl(g, VFIO_GROUP_SET_CONTAINER, intArg(c));
        fails(Errno.EINVAL, () -> user.ioctl(g, VFIO_GROUP_SET_CONTAINER, intArg(c)), "twice");
        fails(Errno.ENODEV, () -> user.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, arena.allocateFrom("0000:09:00.0")));
        fails(Errno.EINVAL, () -> user.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, arena.allocateFrom(ENGINE)),
                "the container has no IOMMU set");
        assertEquals(0, user.ioctl(g, VFIO_GROUP_UNSET_CONTAINER, 0));
        assertEquals(VFIO_GROUP_FLAGS_VIABLE, status(g));
        assertEquals(IommuDomainType.DMA, groupOf(ENGINE).domain().type());
    }

    @Test
    void groupArgumentChecks() {
        bindVfio(ENGINE);
        int g = user.openGroup(groupOf(ENGINE).id());
        fails(Errno.ENOTTY, () -> user.ioctl(g, VFIO_IOMMU_MAP_DMA, arena.allocate(32)), "a container's command");
        MemorySegment s = arena.allocate(8);
        s.set(VfioLayouts.U32, 0, 7);
        fails(Errno.EINVAL, () -> user.ioctl(g, VFIO_GROUP_GET_STATUS, s), "argsz 7");
        MemorySegment name = arena.allocate(4).fill((byte) 'a');
        fails(Errno.EFAULT, () -> user.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, name), "no NUL");
    }

    /** group.c vfio_device_remove_group: the last device leaving takes the group out of its container. */
    @Test
    void theLastDeviceLeavingReleasesTheGroupAndItsFileAnswersEnodev() {
        bindVfio(ENGINE);
        int g = user.openGroup(groupOf(ENGINE).id());
        int c = user.openContainer();
        user.ioctl(g, VFIO_GROUP_SET_CONTAINER, intArg(c));
        core.unbind(fn(ENGINE));
        assertEquals(IommuDomainType.DMA, groupOf(ENGINE).domain().type(), "owner released");
        MemorySegment s = arena.allocate(8);
        s.set(VfioLayouts.U32, 0, 8);
        fails(Errno.ENODEV, () -> user.ioctl(g, VFIO_GROUP_GET_STATUS, s));
        user.close(g);
        fails(Errno.ENOENT, () -> user.openGroup(groupOf(ENGINE).id()));
    }
}
