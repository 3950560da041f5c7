package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.vfio.VfioLayouts;
import dev.dmaplane.vfio.uapi.IoctlTable;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dev.dmaplane.vfio.VfioUapi.*;

/**
 * {@code /dev/vfio/N} ({@code vfio_group_fops} of {@code drivers/vfio/group.c}): status, joining a container, and
 * the device files. Device files hold a reference to it, so its release waits for the last of them.
 */
final class GroupFile implements VfioFile, DeviceFile.Owner {
    private final UserImpl user;
    private final VfioCore core;
    private final GroupState group;
    private final IoctlTable table;
    /** The descriptor's reference and one per open device file; guarded by the core's lock. */
    private int refs = 1;

    GroupFile(UserImpl user, GroupState group) {
        this.user = user;
        this.core = user.core();
        this.group = group;
        this.table = IoctlTable.enotty("vfio group " + group.id())
                .struct(VFIO_GROUP_GET_STATUS, "VFIO_GROUP_GET_STATUS", VfioLayouts.GROUP_STATUS_MINSZ, -1,
                        Errno.EINVAL, (arg, v) -> status(arg))
                .pointer(VFIO_GROUP_SET_CONTAINER, "VFIO_GROUP_SET_CONTAINER", IoctlTable.Arg.INT_POINTER,
                        (arg, v) -> setContainer(arg.get(VfioLayouts.U32, 0)))
                .value(VFIO_GROUP_UNSET_CONTAINER, "VFIO_GROUP_UNSET_CONTAINER", (arg, v) -> unsetContainer())
                .pointer(VFIO_GROUP_GET_DEVICE_FD, "VFIO_GROUP_GET_DEVICE_FD", IoctlTable.Arg.STRING,
                        (arg, v) -> deviceFd(string(arg)));
    }

    GroupState group() {
        return group;
    }

    /**
     * {@code vfio_group_ioctl_get_status}: {@code CONTAINER_SET | VIABLE} once in a container; else {@code VIABLE}
     * while the IOMMU group could be claimed (no member bound to a driver that uses the default domain).
     */
    private long status(MemorySegment arg) {
        int flags;
        synchronized (core.lock()) {
            requireGroup("VFIO_GROUP_GET_STATUS");
            if (group.container() != null) {
                flags = VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
            } else {
                flags = group.iommuGroup().dmaOwnerClaimable() ? VFIO_GROUP_FLAGS_VIABLE : 0;
            }
        }
        VfioLayouts.setU32(arg, VfioLayouts.GROUP_STATUS, "flags", flags);
        return 0;
    }

    /**
     * {@code vfio_group_ioctl_set_container}: {@code EBADF} for a descriptor that is not open, {@code EINVAL} when
     * the group is in a container already, {@code EBADFD} for a file that is no container, and what
     * {@code vfio_container_attach_group} answers ({@code EPERM} when the IOMMU group cannot be claimed).
     */
    private long setContainer(int fd) {
        VfioFile f = user.file(fd);
        synchronized (core.lock()) {
            requireGroup("VFIO_GROUP_SET_CONTAINER");
            if (group.container() != null) {
                throw new ErrnoException(Errno.EINVAL, group + " is in a container already");
            }
            if (!(f instanceof ContainerFile container)) {
                throw new ErrnoException(Errno.EBADFD, "fd " + fd + " is not a VFIO container but " + f);
            }
            container.attachGroup(group);
            group.setContainer(container);
        }
        return 0;
    }

    /** {@code vfio_group_ioctl_unset_container}: {@code EINVAL} outside a container, {@code EBUSY} with devices open. */
    private long unsetContainer() {
        synchronized (core.lock()) {
            if (group.container() == null) {
                throw new ErrnoException(Errno.EINVAL, group + " is not in a container");
            }
            if (refs > 1) {
                throw new ErrnoException(Errno.EBUSY, group + ": " + (refs - 1) + " device file(s) still open");
            }
            leaveContainer();
        }
        return 0;
    }

    private void leaveContainer() {
        ContainerFile c = group.container();
        group.setContainer(null);
        c.detachGroup(group);
    }

    /**
     * {@code vfio_group_ioctl_get_device_fd}: {@code ENODEV} for a name no device of the group has, {@code EINVAL}
     * unless the group's container has an IOMMU set ({@code vfio_device_group_use_iommu}).
     */
    private long deviceFd(String name) {
        DeviceFile file;
        synchronized (core.lock()) {
            requireGroup("VFIO_GROUP_GET_DEVICE_FD");
            VfioPciDevice dev = group.device(name).orElseThrow(() -> new ErrnoException(Errno.ENODEV,
                    "VFIO_GROUP_GET_DEVICE_FD: " + group + " has no device '" + name + "'"));
            ContainerFile c = group.container();
            if (c == null || !c.hasIommu()) {
                throw new ErrnoException(Errno.EINVAL, "VFIO_GROUP_GET_DEVICE_FD " + name + ": " + group
                        + (c == null ? " is in no container" : "'s container has no IOMMU set"));
            }
            file = new DeviceFile(user, this, dev);
            refs++;
        }
        return user.install(file);
    }

    /** A device file of this group closed. */
    @Override
    public void deviceClosed() {
        synchronized (core.lock()) {
            drop();
        }
    }

    private void requireGroup(String op) {
        if (group.isEmpty()) {
            throw new ErrnoException(Errno.ENODEV, op + ": " + group + " has no device bound to vfio-pci any more");
        }
    }

    private static String string(MemorySegment arg) {
        long n = 0;
        while (n < arg.byteSize() && arg.get(ValueLayout.JAVA_BYTE, n) != 0) {
            n++;
        }
        if (n == arg.byteSize()) {
            throw new ErrnoException(Errno.EFAULT, "VFIO_GROUP_GET_DEVICE_FD: the name is not NUL-terminated "
                    + "within its " + n + "-byte buffer");
        }
        return arg.getString(0);
    }

    @Override
    public long ioctl(int cmd, MemorySegment arg) {
        return table.dispatch(cmd, arg);
    }

    @Override
    public long ioctl(int cmd, long value) {
        return table.dispatch(cmd, value);
    }

    /** The descriptor closed. */
    @Override
    public void release() {
        synchronized (core.lock()) {
            drop();
        }
    }

    /** {@code vfio_group_fops_release} once no reference is left: out of the container, the group closed. */
    private void drop() {
        if (--refs > 0) {
            return;
        }
        if (group.container() != null) {
            leaveContainer();
        }
        group.closed(this);
        core.groupReleased(group);
    }

    @Override
    public String toString() {
        return "/dev/vfio/" + group.id();
    }
}
