package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.vfio.uapi.IoctlTable;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static dev.dmaplane.vfio.VfioUapi.*;

/**
 * {@code /dev/vfio/vfio} ({@code drivers/vfio/container.c}): an IOMMU context groups join. Without an IOMMU driver
 * set, a command the container does not know is {@code EINVAL} ({@code vfio_fops_unl_ioctl}'s default);
 * with one, the driver's answer. Groups hold references to it, so closing its descriptor leaves it alive while
 * groups are in it. Group membership is guarded by the core's lock.
 */
final class ContainerFile implements VfioFile {
    private final UserImpl user;
    private final VfioCore core;
    private final IoctlTable table;
    private final List<GroupState> groups = new ArrayList<>();
    private volatile Type1Iommu iommu;

    ContainerFile(UserImpl user) {
        this.user = user;
        this.core = user.core();
        this.table = new IoctlTable("vfio container", this::unknown)
                .value(VFIO_GET_API_VERSION, "VFIO_GET_API_VERSION", (a, v) -> VFIO_API_VERSION)
                .value(VFIO_CHECK_EXTENSION, "VFIO_CHECK_EXTENSION", (a, v) -> checkExtension(v))
                .value(VFIO_SET_IOMMU, "VFIO_SET_IOMMU", (a, v) -> setIommu(v));
    }

    private ErrnoException unknown(int cmd) {
        return new ErrnoException(Errno.EINVAL, String.format(
                "vfio container: ioctl %#x with no IOMMU driver set (vfio_fops_unl_ioctl)", cmd));
    }

    /**
     * {@code vfio_container_ioctl_check_extension}: asked of the IOMMU driver once set, else of the type 1 driver,
     * the only one here (v2 only: the v1 unmap semantics are not offered).
     */
    private long checkExtension(long ext) {
        Type1Iommu t = iommu;
        if (t != null) {
            return Type1Iommu.checkExtension(ext);
        }
        return ext == VFIO_TYPE1v2_IOMMU || ext == VFIO_UNMAP_ALL ? 1 : 0;
    }

    /**
     * {@code vfio_ioctl_set_iommu}: {@code EINVAL} without a group (only a group's owner may enable an IOMMU) or
     * once set; {@code ENODEV} when no IOMMU driver supports the type. Every group attaches to the new driver.
     */
    private long setIommu(long type) {
        synchronized (core.lock()) {
            if (groups.isEmpty() || iommu != null) {
                throw new ErrnoException(Errno.EINVAL, "VFIO_SET_IOMMU " + type + ": the container "
                        + (iommu != null ? "has its IOMMU set already" : "has no group"));
            }
            if (type != VFIO_TYPE1v2_IOMMU) {
                throw new ErrnoException(Errno.ENODEV, "VFIO_SET_IOMMU: no IOMMU driver supports type " + type);
            }
            Type1Iommu t = new Type1Iommu(user, core.dmaEntryLimit());
            List<GroupState> done = new ArrayList<>();
            try {
                for (GroupState g : groups) {
                    t.attachGroup(g, this);
                    done.add(g);
                }
            } catch (RuntimeException e) {
                for (GroupState g : done) {
                    t.detachGroup(g, this);
                }
                throw e;
            }
            iommu = t;
        }
        return 0;
    }

    boolean hasIommu() {
        return iommu != null;
    }

    /**
     * {@code vfio_container_attach_group}: the group's DMA is claimed for user space ({@code EPERM} while a member
     * is bound to a driver that uses the default domain, as {@code iommu_group_claim_dma_owner} answers), and
     * attached to the IOMMU driver if one is set.
     */
    void attachGroup(GroupState g) {
        g.iommuGroup().claimDmaOwner(this);
        Type1Iommu t = iommu;
        if (t != null) {
            try {
                t.attachGroup(g, this);
            } catch (RuntimeException e) {
                g.iommuGroup().releaseDmaOwner(this);
                throw e;
            }
        }
        groups.add(g);
    }

    /**
     * {@code vfio_container_detach_group}: the group leaves the IOMMU driver and goes back to its default domain;
     * with the last group the driver is released ({@code __vfio_group_unset_container}).
     */
    void detachGroup(GroupState g) {
        groups.remove(g);
        Type1Iommu t = iommu;
        if (t != null) {
            t.detachGroup(g, this);
            if (groups.isEmpty()) {
                iommu = null;
            }
        }
        g.iommuGroup().releaseDmaOwner(this);
    }

    @Override
    public long ioctl(int cmd, MemorySegment arg) {
        Type1Iommu t = iommu;
        if (t != null && !table.has(cmd)) {
            return t.table().dispatch(cmd, arg);
        }
        return table.dispatch(cmd, arg);
    }

    @Override
    public long ioctl(int cmd, long value) {
        Type1Iommu t = iommu;
        if (t != null && !table.has(cmd)) {
            return t.table().dispatch(cmd, value);
        }
        return table.dispatch(cmd, value);
    }

    @Override
    public void release() {
    }

    @Override
    public String toString() {
        return "vfio container of " + user.mm().name();
    }
}
