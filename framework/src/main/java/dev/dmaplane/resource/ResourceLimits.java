package dev.dmaplane.resource;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

/**
 * Per-device limits as the RDMA cgroup sets them ({@code rdma.max}: {@code hca_handle} contexts and
 * {@code hca_object} objects).
 */
public record ResourceLimits(int maxContexts, int maxObjects) {
    /** No limit beyond what fits an int. */
    public static final ResourceLimits UNLIMITED = new ResourceLimits(Integer.MAX_VALUE, Integer.MAX_VALUE);

    public ResourceLimits {
        if (maxContexts < 0 || maxObjects < 0) {
            throw new ErrnoException(Errno.EINVAL, "limits must be >= 0: hca_handle=" + maxContexts + " hca_object=" + maxObjects);
        }
    }
}
