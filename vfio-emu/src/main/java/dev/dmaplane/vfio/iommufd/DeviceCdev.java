package dev.dmaplane.vfio.iommufd;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.vfio.VfioDevice;
import dev.dmaplane.vfio.VfioUser;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static dev.dmaplane.vfio.VfioLayouts.setU32;
import static dev.dmaplane.vfio.VfioLayouts.u32;
import static dev.dmaplane.vfio.iommufd.IommufdUapi.*;

/**
 * A vfio-pci device opened through its cdev ({@code /dev/vfio/devices/vfioX}) with typed calls over the byte path:
 * bind to an iommufd, attach (or replace) and detach a page table; {@link #device()} for the device file's own
 * calls once bound.
 */
public record DeviceCdev(VfioUser user, int fd) {
    public DeviceCdev {
        ErrnoException.requireNonNull(user, "DeviceCdev: user");
    }

    /** {@code open("/dev/vfio/devices/vfioX")} of vfio-pci device {@code device}. */
    public static DeviceCdev open(VfioUser user, String device) {
        ErrnoException.requireNonNull(user, "DeviceCdev.open: user");
        return new DeviceCdev(user, user.openDevice(device));
    }

    /** {@code VFIO_DEVICE_BIND_IOMMUFD}: the device's ID in the iommufd. */
    public int bind(Iommufd iommufd) {
        ErrnoException.requireNonNull(iommufd, "DeviceCdev.bind: iommufd");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = a.allocate(BIND_IOMMUFD);
            setU32(m, BIND_IOMMUFD, "argsz", (int) BIND_IOMMUFD.byteSize());
            setU32(m, BIND_IOMMUFD, "iommufd", iommufd.fd());
            user.ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, m);
            return u32(m, BIND_IOMMUFD, "out_devid");
        }
    }

    /**
     * {@code VFIO_DEVICE_ATTACH_IOMMUFD_PT} to an IOAS or HWPT ({@code ptId}); replaces the page table when attached
     * already. Returns the ID of the HWPT attached (for an IOAS, its auto domain).
     */
    public int attach(int ptId) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = a.allocate(ATTACH_IOMMUFD_PT);
            setU32(m, ATTACH_IOMMUFD_PT, "argsz", (int) ATTACH_IOMMUFD_PT.byteSize());
            setU32(m, ATTACH_IOMMUFD_PT, "pt_id", ptId);
            user.ioctl(fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, m);
            return u32(m, ATTACH_IOMMUFD_PT, "pt_id");
        }
    }

    /** {@code VFIO_DEVICE_DETACH_IOMMUFD_PT}. */
    public void detach() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = a.allocate(DETACH_IOMMUFD_PT);
            setU32(m, DETACH_IOMMUFD_PT, "argsz", (int) DETACH_IOMMUFD_PT.byteSize());
            user.ioctl(fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, m);
        }
    }

    /** The device file's typed calls (info, regions, reset, mmap) on this descriptor. */
    public VfioDevice device() {
        return new VfioDevice(user, fd);
    }

    /** {@code close(fd)}. */
    public void close() {
        user.close(fd);
    }
}
