package dev.dmaplane.vfio;

import dev.dmaplane.errno.ErrnoException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static dev.dmaplane.vfio.VfioLayouts.*;
import static dev.dmaplane.vfio.VfioUapi.*;

/** A group descriptor ({@code /dev/vfio/N}) with typed calls over the byte path. */
public record VfioGroup(VfioUser user, int fd) {
    public VfioGroup {
        ErrnoException.requireNonNull(user, "VfioGroup: user");
    }

    /** {@code open("/dev/vfio/N")}. */
    public static VfioGroup open(VfioUser user, int group) {
        ErrnoException.requireNonNull(user, "VfioGroup.open: user");
        return new VfioGroup(user, user.openGroup(group));
    }

    /** {@code VFIO_GROUP_GET_STATUS}: {@code VFIO_GROUP_FLAGS_*}. */
    public int status() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(GROUP_STATUS);
            setU32(s, GROUP_STATUS, "argsz", (int) GROUP_STATUS.byteSize());
            user.ioctl(fd, VFIO_GROUP_GET_STATUS, s);
            return u32(s, GROUP_STATUS, "flags");
        }
    }

    /** Whether {@link #status()} says {@code VFIO_GROUP_FLAGS_VIABLE}. */
    public boolean viable() {
        return (status() & VFIO_GROUP_FLAGS_VIABLE) != 0;
    }

    /** {@code VFIO_GROUP_SET_CONTAINER}. */
    public void setContainer(VfioContainer container) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(4);
            s.set(U32, 0, container.fd());
            user.ioctl(fd, VFIO_GROUP_SET_CONTAINER, s);
        }
    }

    /** {@code VFIO_GROUP_UNSET_CONTAINER}. */
    public void unsetContainer() {
        user.ioctl(fd, VFIO_GROUP_UNSET_CONTAINER, 0);
    }

    /** {@code VFIO_GROUP_GET_DEVICE_FD}: the device file's descriptor. */
    public int deviceFd(String name) {
        try (Arena a = Arena.ofConfined()) {
            return (int) user.ioctl(fd, VFIO_GROUP_GET_DEVICE_FD, a.allocateFrom(name));
        }
    }

    /** {@code close(fd)}. */
    public void close() {
        user.close(fd);
    }
}
