package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.vfio.VfioContainer;
import dev.dmaplane.vfio.VfioDevice;
import dev.dmaplane.vfio.VfioGroup;
import dev.dmaplane.vfio.VfioUapi;
import dev.dmaplane.vfio.VfioUser;

/**
 * The container/group front end with the type 1 v2 IOMMU ({@code Documentation/driver-api/vfio.rst}, "VFIO Usage
 * Example"; SPDK's {@code vfio_enabled} path in {@code lib/env_dpdk/memory.c}): {@code /dev/vfio/vfio},
 * {@code /dev/vfio/N} set to it, {@code VFIO_TYPE1v2_IOMMU}, then the device file of the group.
 */
public final class ContainerFrontEnd implements DmaFrontEnd {
    private static final int RW = VfioUapi.VFIO_DMA_MAP_FLAG_READ | VfioUapi.VFIO_DMA_MAP_FLAG_WRITE;

    private final VfioUser user;
    private final String bdf;
    private final VfioContainer container;
    private final VfioGroup group;
    private final VfioDevice device;

    private ContainerFrontEnd(VfioUser user, String bdf, VfioContainer container, VfioGroup group, VfioDevice device) {
        this.user = user;
        this.bdf = bdf;
        this.container = container;
        this.group = group;
        this.device = device;
    }

    /**
     * Opens group {@code groupId}, a container with the type 1 v2 IOMMU for it, and the device file of {@code bdf}.
     * On a failure whatever was opened is closed again.
     *
     * @throws ErrnoException {@code ENOENT} when the group has no device on vfio-pci, {@code EPERM} for a group that
     *                        is not viable, {@code EINVAL} for a type 1 v2 IOMMU the container does not offer
     */
    public static ContainerFrontEnd open(VfioUser user, int groupId, String bdf) {
        ErrnoException.requireNonNull(user, "ContainerFrontEnd.open: user");
        ErrnoException.requireNonNull(bdf, "ContainerFrontEnd.open: bdf");
        VfioContainer container = VfioContainer.open(user);
        VfioGroup group = null;
        try {
            if (!container.checkExtension(VfioUapi.VFIO_TYPE1v2_IOMMU)) {
                throw new ErrnoException(Errno.EINVAL, "container of group " + groupId + ": no VFIO_TYPE1v2_IOMMU");
            }
            group = VfioGroup.open(user, groupId);
            if (!group.viable()) {
                throw new ErrnoException(Errno.EPERM, "group " + groupId + " of " + bdf + " is not viable: a member"
                        + " is bound to a kernel driver");
            }
            group.setContainer(container);
            container.setIommu(VfioUapi.VFIO_TYPE1v2_IOMMU);
            VfioDevice device = VfioDevice.open(group, bdf);
            return new ContainerFrontEnd(user, bdf, container, group, device);
        } catch (RuntimeException e) {
            if (group != null) {
                group.close();
            }
            container.close();
            throw e;
        }
    }

    @Override
    public VfioUser user() {
        return user;
    }

    @Override
    public String bdf() {
        return bdf;
    }

    @Override
    public VfioDevice device() {
        return device;
    }

    @Override
    public void map(long vaddr, long length) {
        container.mapDma(vaddr, vaddr, length, RW);
    }

    @Override
    public long unmap(long vaddr, long length) {
        return container.unmapDma(vaddr, length, 0);
    }

    /** {@code EOPNOTSUPP}: type 1 maps pinned user pages only, and a dma-buf's device memory is none. */
    @Override
    public long mapDmaBuf(int dmabufFd, long length) {
        throw new ErrnoException(Errno.EOPNOTSUPP, "the VFIO container (type 1) cannot map dma-buf fd " + dmabufFd
                + " for " + bdf + ": it pins user pages only, no VM_PFNMAP device memory; iommufd's"
                + " IOMMU_IOAS_MAP_FILE can");
    }

    @Override
    public long unmapDmaBuf(long iova, long length) {
        throw new ErrnoException(Errno.EINVAL, String.format("the VFIO container maps no dma-buf (IOVA %#x)", iova));
    }

    @Override
    public boolean isOpen() {
        return user.isOpen(container.fd()) && user.isOpen(group.fd());
    }

    /** Device first, then the group (which leaves the container, unmapping what it held), then the container. */
    @Override
    public void close() {
        if (user.isOpen(device.fd())) {
            device.close();
        }
        if (user.isOpen(group.fd())) {
            group.close();
        }
        if (user.isOpen(container.fd())) {
            container.close();
        }
    }
}
