package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuGroup;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A VFIO group ({@code struct vfio_group} of {@code drivers/vfio/group.c}): the devices of one IOMMU group bound to
 * vfio-pci, the one file that may have it open, and the container it joined. Guarded by the core's lock.
 */
final class GroupState {
    private final IommuGroup iommuGroup;
    private final Map<String, VfioPciDevice> devices = new LinkedHashMap<>();
    private GroupFile openedFile;
    private ContainerFile container;
    /** Device cdevs bound to iommufd ({@code group->cdev_device_open_cnt}). */
    private int cdevOpen;

    GroupState(IommuGroup iommuGroup) {
        this.iommuGroup = iommuGroup;
    }

    IommuGroup iommuGroup() {
        return iommuGroup;
    }

    int id() {
        return iommuGroup.id();
    }

    void add(VfioPciDevice d) {
        devices.put(d.name(), d);
    }

    void remove(VfioPciDevice d) {
        devices.remove(d.name(), d);
    }

    boolean isEmpty() {
        return devices.isEmpty();
    }

    Optional<VfioPciDevice> device(String name) {
        return Optional.ofNullable(devices.get(name));
    }

    List<VfioPciDevice> devices() {
        return new ArrayList<>(devices.values());
    }

    /**
     * {@code vfio_group_fops_open}: one file at a time ({@code group->opened_file}), none while a device of the
     * group is bound to iommufd through its cdev.
     */
    void open(GroupFile f) {
        if (openedFile != null) {
            throw new ErrnoException(Errno.EBUSY, "/dev/vfio/" + id() + " is open already");
        }
        if (cdevOpen > 0) {
            throw new ErrnoException(Errno.EBUSY, "/dev/vfio/" + id() + ": " + cdevOpen
                    + " device(s) of the group are bound to iommufd through their cdev");
        }
        openedFile = f;
    }

    /**
     * {@code vfio_device_block_group}: a device cdev binds to iommufd; {@code EBUSY} while the group's file is open
     * (the container front end uses the group).
     */
    void blockGroup(String device) {
        if (openedFile != null) {
            throw new ErrnoException(Errno.EBUSY, device + ": /dev/vfio/" + id()
                    + " is open: the group is used through the container front end");
        }
        cdevOpen++;
    }

    /** {@code vfio_device_unblock_group}. */
    void unblockGroup() {
        cdevOpen--;
    }

    boolean isOpen() {
        return openedFile != null;
    }

    void closed(GroupFile f) {
        if (openedFile == f) {
            openedFile = null;
        }
    }

    ContainerFile container() {
        return container;
    }

    void setContainer(ContainerFile c) {
        container = c;
    }

    @Override
    public String toString() {
        return "vfio group " + id();
    }
}
