package dev.dmaplane.rdma.verbs;

import org.osgi.annotation.versioning.ProviderType;

import java.util.List;

/**
 * A work request: a send-queue request ({@link SendWr}, {@code struct ibv_send_wr}) or a receive request
 * ({@link RecvWr}, {@code struct ibv_recv_wr}). {@code wrId} comes back in the completion.
 */
@ProviderType
public sealed interface WorkRequest permits SendWr, RecvWr {
    /** The caller's identifier, returned in the work completion. */
    long wrId();

    /** The scatter/gather list. */
    List<Sge> sgList();

    /** Total bytes of the scatter/gather list. */
    default long totalLength() {
        long n = 0;
        for (Sge s : sgList()) {
            n += s.length();
        }
        return n;
    }
}
