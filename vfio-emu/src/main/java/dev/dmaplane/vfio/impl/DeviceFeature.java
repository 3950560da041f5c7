package dev.dmaplane.vfio.impl;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.lang.foreign.MemorySegment;

import static dev.dmaplane.vfio.VfioLayouts.*;
import static dev.dmaplane.vfio.VfioUapi.*;

/**
 * {@code VFIO_DEVICE_FEATURE} of a vfio-pci device file: {@code vfio_ioctl_device_feature} in
 * {@code drivers/vfio/vfio_main.c} (the header's checks, then the feature), {@code vfio_check_feature} (PROBE, GET
 * and SET against what the feature supports) and {@code vfio_pci_core_ioctl_feature}, which offers
 * {@link dev.dmaplane.vfio.VfioUapi#VFIO_DEVICE_FEATURE_DMA_BUF} and answers {@code ENOTTY} for the rest.
 */
final class DeviceFeature {
    /** Every flag {@code vfio_ioctl_device_feature} knows: the feature number and GET, SET, PROBE. */
    static final int KNOWN_FLAGS = VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET
            | VFIO_DEVICE_FEATURE_PROBE;

    private final UserImpl user;
    private final VfioPciDevice dev;

    DeviceFeature(UserImpl user, VfioPciDevice dev) {
        this.user = user;
        this.dev = dev;
    }

    /**
     * The ioctl after {@code IoctlTable} checked {@code argsz >= 8} and the known flags: GET with SET is
     * {@code EINVAL} unless PROBE asks which of them the feature supports; an unknown feature is {@code ENOTTY}.
     *
     * @return 0 for a PROBE, the new file descriptor for a DMA_BUF GET
     */
    long run(MemorySegment arg) {
        long argsz = Integer.toUnsignedLong(arg.get(U32, 0));
        int flags = arg.get(U32, 4);
        boolean probe = (flags & VFIO_DEVICE_FEATURE_PROBE) != 0;
        if (!probe && (flags & VFIO_DEVICE_FEATURE_GET) != 0 && (flags & VFIO_DEVICE_FEATURE_SET) != 0) {
            throw new ErrnoException(Errno.EINVAL, dev.name() + ": VFIO_DEVICE_FEATURE: GET and SET together without PROBE");
        }
        int feature = flags & VFIO_DEVICE_FEATURE_MASK;
        long dataSize = argsz - DEVICE_FEATURE.byteSize();
        MemorySegment data = arg.asSlice(DEVICE_FEATURE.byteSize());
        if (feature == VFIO_DEVICE_FEATURE_DMA_BUF) {
            if (check(flags, dataSize, VFIO_DEVICE_FEATURE_GET, FEATURE_DMA_BUF.byteSize(), "DMA_BUF") == 0) {
                return 0;
            }
            DmaBuf buf = dev.dmaBufs().export(data, dataSize);
            return user.installExported(buf);
        }
        throw new ErrnoException(Errno.ENOTTY, dev.name() + ": VFIO_DEVICE_FEATURE " + feature
                + " is not a feature of vfio-pci (vfio_pci_core_ioctl_feature)");
    }

    /**
     * {@code vfio_check_feature}: {@code EINVAL} for GET or SET the feature does not support, for neither without
     * PROBE, and for data shorter than the feature's structure.
     *
     * @return 0 for a PROBE that passed, 1 to go on with the feature
     */
    private int check(int flags, long dataSize, int supported, long minsz, String name) {
        int asked = flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET);
        if ((asked & ~supported) != 0) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: VFIO_DEVICE_FEATURE_%s supports %s, not %s",
                    dev.name(), name, ops(supported), ops(asked)));
        }
        if ((flags & VFIO_DEVICE_FEATURE_PROBE) != 0) {
            return 0;
        }
        if (asked == 0) {
            throw new ErrnoException(Errno.EINVAL, dev.name() + ": VFIO_DEVICE_FEATURE_" + name
                    + ": neither GET nor SET, and no PROBE");
        }
        if (dataSize < minsz) {
            throw new ErrnoException(Errno.EINVAL, String.format("%s: VFIO_DEVICE_FEATURE_%s: argsz leaves %d bytes"
                    + " for its %d-byte structure", dev.name(), name, dataSize, minsz));
        }
        return 1;
    }

    private static String ops(int flags) {
        String get = (flags & VFIO_DEVICE_FEATURE_GET) != 0 ? "GET" : "";
        String set = (flags & VFIO_DEVICE_FEATURE_SET) != 0 ? "SET" : "";
        return get.isEmpty() && set.isEmpty() ? "nothing" : get + (get.isEmpty() || set.isEmpty() ? "" : "|") + set;
    }
}
