package dev.dmaplane.vfio.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.vfio.impl.iommufd.IommufdCtx;
import dev.dmaplane.vfio.impl.iommufd.IommufdDevice;
import dev.dmaplane.vfio.uapi.IoctlTable;

import java.lang.foreign.MemorySegment;

import static dev.dmaplane.vfio.VfioLayouts.U32;
import static dev.dmaplane.vfio.iommufd.IommufdUapi.*;

/**
 * A vfio-pci device opened through its cdev ({@code /dev/vfio/devices/vfioX}, {@code drivers/vfio/device_cdev.c}):
 * nothing but {@code VFIO_DEVICE_BIND_IOMMUFD} works until it is bound to an iommufd ({@code EINVAL}, as
 * {@code vfio_device_fops_unl_ioctl} answers without {@code access_granted}); binding blocks the group's container
 * front end ({@code EBUSY} either way), opens the device as a group's device file does, and from then on the device
 * file's ioctls, reads, writes and mmaps work, with {@code ATTACH_IOMMUFD_PT} (attach, or replace when attached) and
 * {@code DETACH_IOMMUFD_PT}. Closing it closes the device, unbinds it from the iommufd and unblocks the group.
 */
final class CdevFile implements VfioFile, DeviceFile.Owner {
    /** {@code VFIO_DEVICE_ATTACH_PASID}, {@code VFIO_DEVICE_DETACH_PASID}. */
    private static final int PASID = 1;

    private final UserImpl user;
    private final VfioPciDevice dev;
    private final IoctlTable table;
    private DeviceFile file;
    private IommufdDevice idev;
    private boolean released;

    CdevFile(UserImpl user, VfioPciDevice dev) {
        this.user = user;
        this.dev = dev;
        this.table = IoctlTable.enotty("vfio device cdev " + dev.name())
                .struct(VFIO_DEVICE_BIND_IOMMUFD, "VFIO_DEVICE_BIND_IOMMUFD", BIND_IOMMUFD.byteSize(), 0,
                        Errno.EINVAL, (arg, v) -> bind(arg))
                .struct(VFIO_DEVICE_ATTACH_IOMMUFD_PT, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", ATTACH_IOMMUFD_PT.byteSize(),
                        PASID, Errno.EINVAL, (arg, v) -> attach(arg))
                .struct(VFIO_DEVICE_DETACH_IOMMUFD_PT, "VFIO_DEVICE_DETACH_IOMMUFD_PT", DETACH_IOMMUFD_PT.byteSize(),
                        PASID, Errno.EINVAL, (arg, v) -> detach(arg));
    }

    /**
     * {@code vfio_df_ioctl_bind_iommufd}: a negative fd is {@code EINVAL}; the group is blocked ({@code EBUSY} while
     * its file is open); binding twice is {@code EINVAL}; the fd must be open ({@code EBADF}) and be
     * {@code /dev/iommu} ({@code EBADFD}); {@code iommufd_device_bind} claims the group ({@code EPERM}). The device ID
     * is written into {@code out_devid}.
     */
    private long bind(MemorySegment arg) {
        int fd = arg.get(U32, 8);
        if (fd < 0) {
            throw new ErrnoException(Errno.EINVAL, dev.name() + ": VFIO_DEVICE_BIND_IOMMUFD: iommufd " + fd);
        }
        synchronized (dev.core().lock()) {
            dev.group().blockGroup(dev.name());
        }
        try {
            synchronized (this) {
                if (file != null) {
                    throw new ErrnoException(Errno.EINVAL, dev.name() + ": VFIO_DEVICE_BIND_IOMMUFD: bound already");
                }
                IommufdCtx ctx = IommufdCtx.fromFile(user.file(fd), fd);
                IommufdDevice d = ctx.bind(dev.function());
                try {
                    file = new DeviceFile(user, this, dev);
                } catch (RuntimeException e) {
                    d.unbind();
                    throw e;
                }
                idev = d;
                arg.set(U32, 12, d.devId());
                return 0;
            }
        } catch (RuntimeException e) {
            synchronized (dev.core().lock()) {
                dev.group().unblockGroup();
            }
            throw e;
        }
    }

    /**
     * {@code vfio_df_ioctl_attach_pt} through {@code vfio_iommufd_physical_attach_ioas}: attach, or replace the page
     * table attached; the HWPT ID attached is written back into {@code pt_id}. PASID attach is {@code EOPNOTSUPP}.
     */
    private long attach(MemorySegment arg) {
        if ((arg.get(U32, 4) & PASID) != 0) {
            throw new ErrnoException(Errno.EOPNOTSUPP, dev.name() + ": VFIO_DEVICE_ATTACH_IOMMUFD_PT: no PASID attach");
        }
        int ptId = arg.get(U32, 8);
        IommufdDevice d = bound("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
        int hwpt = d.attached() ? d.replace(ptId) : d.attach(ptId);
        arg.set(U32, 8, hwpt);
        return 0;
    }

    /** {@code vfio_df_ioctl_detach_pt}: DMA blocked again; nothing when not attached. */
    private long detach(MemorySegment arg) {
        if ((arg.get(U32, 4) & PASID) != 0) {
            throw new ErrnoException(Errno.EOPNOTSUPP, dev.name() + ": VFIO_DEVICE_DETACH_IOMMUFD_PT: no PASID detach");
        }
        bound("VFIO_DEVICE_DETACH_IOMMUFD_PT").detach();
        return 0;
    }

    private synchronized IommufdDevice bound(String op) {
        dev.requirePresent(op);
        if (idev == null) {
            throw new ErrnoException(Errno.EINVAL, dev.name() + ": " + op + ": not bound to an iommufd");
        }
        return idev;
    }

    /** The iommufd context the device is bound to ({@code vfio_iommufd_device_ictx}); {@code EINVAL} unbound. */
    IommufdCtx ictx() {
        return bound("VFIO_DEVICE_PCI_HOT_RESET").ctx();
    }

    /** The device file once bound; {@code EINVAL} before ({@code !df->access_granted}). */
    private synchronized DeviceFile file(String op) {
        if (file == null) {
            throw new ErrnoException(Errno.EINVAL, dev.name() + ": " + op + " before VFIO_DEVICE_BIND_IOMMUFD");
        }
        return file;
    }

    @Override
    public long ioctl(int cmd, MemorySegment arg) {
        if (cmd == VFIO_DEVICE_BIND_IOMMUFD) {
            return table.dispatch(cmd, arg);
        }
        DeviceFile f = file("ioctl " + Integer.toHexString(cmd));
        return table.has(cmd) ? table.dispatch(cmd, arg) : f.ioctl(cmd, arg);
    }

    @Override
    public long ioctl(int cmd, long value) {
        if (cmd == VFIO_DEVICE_BIND_IOMMUFD) {
            return table.dispatch(cmd, value);
        }
        DeviceFile f = file("ioctl " + Integer.toHexString(cmd));
        return table.has(cmd) ? table.dispatch(cmd, value) : f.ioctl(cmd, value);
    }

    @Override
    public long read(MemorySegment dst, long offset) {
        return file("pread").read(dst, offset);
    }

    @Override
    public long write(MemorySegment src, long offset) {
        return file("pwrite").write(src, offset);
    }

    @Override
    public long mmap(long offset, long length, int prot) {
        return file("mmap").mmap(offset, length, prot);
    }

    /** {@code vfio_device_fops_release}: the device closes, then {@link #deviceClosed} unbinds. */
    @Override
    public void release() {
        DeviceFile f;
        synchronized (this) {
            if (released) {
                return;
            }
            released = true;
            f = file;
        }
        if (f != null) {
            f.release();
        }
    }

    /** {@code vfio_df_unbind_iommufd}: detached and unbound from the iommufd, the group unblocked. */
    @Override
    public void deviceClosed() {
        IommufdDevice d;
        synchronized (this) {
            d = idev;
            idev = null;
        }
        if (d != null) {
            d.unbind();
        }
        synchronized (dev.core().lock()) {
            dev.group().unblockGroup();
        }
    }

    @Override
    public String toString() {
        return "vfio device cdev " + dev.name() + " of " + user;
    }
}
