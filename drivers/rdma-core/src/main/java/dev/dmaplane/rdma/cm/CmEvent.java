package dev.dmaplane.rdma.cm;

import org.osgi.annotation.versioning.ProviderType;

/** {@code struct rdma_cm_event}: what {@link EventChannel#getEvent} returns; {@link #ack()} it when done. */
@ProviderType
public interface CmEvent {
    CmEventType type();

    /** The id the event is about; for CONNECT_REQUEST the new id of the connection. */
    CmId id();

    /** For CONNECT_REQUEST, the listening id the request came to; else null. */
    CmId listenId();

    /**
     * 0, a negative errno ({@code -ETIMEDOUT} for UNREACHABLE after the CM's retries, {@code -EHOSTUNREACH} for an
     * ADDR_ERROR without route), or for REJECTED the IB CM reject reason ({@link RejectReason}) or, on iWARP, the
     * provider's errno as {@code cma_iw_handler} copies it ({@code -ECONNRESET} from siw).
     */
    int status();

    /** The connection parameters and private data the peer sent (CONNECT_REQUEST, ESTABLISHED, REJECTED, ...). */
    ConnParam param();

    /** {@code rdma_ack_cm_event}. Idempotent. */
    void ack();
}
