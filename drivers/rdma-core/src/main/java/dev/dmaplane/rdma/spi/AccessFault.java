package dev.dmaplane.rdma.spi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.WcStatus;

/**
 * A data-path access the core refused: a bad key, a PD or access mismatch, a range outside the region, an
 * on-demand page that cannot be faulted in, or an IOMMU fault. Carries the completion status the work request
 * ends with ({@code LOC_PROT_ERR}, {@code REM_ACCESS_ERR}, {@code LOC_LEN_ERR}, ...).
 */
public final class AccessFault extends ErrnoException {
    private static final long serialVersionUID = 1L;

    private final WcStatus status;

    public AccessFault(WcStatus status, Errno errno, String message) {
        super(errno, status + ": " + message);
        this.status = status;
    }

    public AccessFault(WcStatus status, Errno errno, String message, Throwable cause) {
        super(errno, status + ": " + message, cause);
        this.status = status;
    }

    /** The completion status for the work request that made the access. */
    public WcStatus status() {
        return status;
    }
}
