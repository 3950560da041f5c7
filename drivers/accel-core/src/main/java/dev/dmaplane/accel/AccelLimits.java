package dev.dmaplane.accel;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/** Per-context limits of a device: bytes of buffer objects and handles (the DRM cgroup's role for GEM memory). */
public record AccelLimits(long maxBytes, int maxHandles) {
    /** No limit beyond what fits. */
    public static final AccelLimits UNLIMITED = new AccelLimits(Long.MAX_VALUE, Integer.MAX_VALUE);

    public AccelLimits {
        if (maxBytes < 0 || maxHandles < 0) {
            throw new ErrnoException(Errno.EINVAL, "limits must be >= 0: bytes=" + maxBytes + " handles=" + maxHandles);
        }
    }
}
