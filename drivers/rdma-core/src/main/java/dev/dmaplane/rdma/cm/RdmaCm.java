package dev.dmaplane.rdma.cm;

import dev.dmaplane.mm.AddressSpace;
import org.osgi.annotation.versioning.ProviderType;

import java.util.List;

/**
 * The machine's RDMA connection manager ({@code rdma_cm} with {@code ib_cm}): event channels for processes, the ids
 * that exist, and the CM's timing parameters.
 */
@ProviderType
public interface RdmaCm {
    /**
     * {@code rdma_create_event_channel} for the process whose memory is {@code process}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a null or closed address space, {@code ENODEV}
     *                                           after the core closed
     */
    EventChannel createEventChannel(AddressSpace process);

    /** Every id of every channel ({@code rdma resource show cm_id}). */
    List<CmIdInfo> ids();

    /**
     * The CM response timeout the REQ announces and waits with, as an IBA time exponent (4.096 µs · 2^t; cma.c's
     * {@code CMA_CM_RESPONSE_TIMEOUT}, 20, by default): a REQ, REP or DREQ is resent after
     * 2 · packet lifetime + this, {@link #setMaxCmRetries max} times.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} outside 0..31
     */
    void setCmResponseTimeout(int ibaTime);

    /**
     * How many times a REQ, REP or DREQ is resent ({@code CMA_MAX_CM_RETRIES}, 15 by default).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} outside 0..15 (the REQ's 4-bit field)
     */
    void setMaxCmRetries(int retries);
}
