package dev.dmaplane.nvmeuser;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.vfio.VfioDevice;
import dev.dmaplane.vfio.VfioUser;
import dev.dmaplane.vfio.iommufd.DeviceCdev;
import dev.dmaplane.vfio.iommufd.Iommufd;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static dev.dmaplane.vfio.iommufd.IommufdUapi.IOMMU_IOAS_MAP_FIXED_IOVA;
import static dev.dmaplane.vfio.iommufd.IommufdUapi.IOMMU_IOAS_MAP_READABLE;
import static dev.dmaplane.vfio.iommufd.IommufdUapi.IOMMU_IOAS_MAP_WRITEABLE;

/**
 * The iommufd front end ({@code Documentation/userspace-api/iommufd.rst}, {@code drivers/vfio/device_cdev.c}; SPDK's
 * and QEMU's iommufd back ends): {@code /dev/iommu}, an IOAS, the device's cdev bound to the iommufd
 * ({@code VFIO_DEVICE_BIND_IOMMUFD}) and attached to the IOAS ({@code VFIO_DEVICE_ATTACH_IOMMUFD_PT}); memory is
 * mapped with {@code IOMMU_IOAS_MAP} at {@code FIXED_IOVA} = VA.
 */
public final class IommufdFrontEnd implements DmaFrontEnd {
    private static final Logger LOG = LoggerFactory.getLogger(IommufdFrontEnd.class);
    private static final int MAP_RW = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

    private final VfioUser user;
    private final String bdf;
    private final Iommufd iommufd;
    private final int ioas;
    private final DeviceCdev cdev;
    private final int devId;

    private IommufdFrontEnd(VfioUser user, String bdf, Iommufd iommufd, int ioas, DeviceCdev cdev, int devId) {
        this.user = user;
        this.bdf = bdf;
        this.iommufd = iommufd;
        this.ioas = ioas;
        this.cdev = cdev;
        this.devId = devId;
    }

    /**
     * Opens {@code /dev/iommu}, allocates an IOAS, opens the cdev of {@code bdf}, binds it and attaches it to the
     * IOAS. On a failure whatever was opened is closed again.
     *
     * @throws ErrnoException {@code ENODEV} for a function with no vfio-pci cdev, {@code EBUSY} for a group another
     *                        user owns, or the errno of the bind or attach
     */
    public static IommufdFrontEnd open(VfioUser user, String bdf) {
        ErrnoException.requireNonNull(user, "IommufdFrontEnd.open: user");
        ErrnoException.requireNonNull(bdf, "IommufdFrontEnd.open: bdf");
        Iommufd iommufd = Iommufd.open(user);
        DeviceCdev cdev = null;
        try {
            int ioas = iommufd.ioasAlloc();
            cdev = DeviceCdev.open(user, bdf);
            int devId = cdev.bind(iommufd);
            cdev.attach(ioas);
            return new IommufdFrontEnd(user, bdf, iommufd, ioas, cdev, devId);
        } catch (RuntimeException e) {
            if (cdev != null) {
                cdev.close();
            }
            iommufd.close();
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
        return cdev.device();
    }

    /** The IOAS the device is attached to. */
    public int ioas() {
        return ioas;
    }

    /** The device's ID in the iommufd ({@code out_devid} of the bind). */
    public int devId() {
        return devId;
    }

    @Override
    public void map(long vaddr, long length) {
        iommufd.map(ioas, vaddr, length, vaddr, MAP_RW);
    }

    @Override
    public long unmap(long vaddr, long length) {
        return iommufd.unmap(ioas, vaddr, length);
    }

    /** Maps the dma-buf {@code dmabufFd} whole into the IOAS ({@code IOMMU_IOAS_MAP_FILE}); returns its IOVA. */
    @Override
    public long mapDmaBuf(int dmabufFd, long length) {
        return iommufd.mapFile(ioas, dmabufFd, 0, length, 0, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE);
    }

    @Override
    public long unmapDmaBuf(long iova, long length) {
        return iommufd.unmap(ioas, iova, length);
    }

    @Override
    public boolean isOpen() {
        return user.isOpen(iommufd.fd()) && user.isOpen(cdev.fd());
    }

    /**
     * Detaches the device and closes its cdev (which unbinds it from the iommufd), then closes the iommufd, which
     * destroys the IOAS and unpins what it still mapped. A device that was unplugged cannot be detached: closing
     * it is all that is left.
     */
    @Override
    public void close() {
        if (user.isOpen(cdev.fd())) {
            try {
                cdev.detach();
            } catch (ErrnoException e) {
                LOG.warn("{}: detach from IOAS {} before close: {}", bdf, ioas, e.getMessage(), e);
            }
            cdev.close();
        }
        if (user.isOpen(iommufd.fd())) {
            iommufd.close();
        }
    }
}
