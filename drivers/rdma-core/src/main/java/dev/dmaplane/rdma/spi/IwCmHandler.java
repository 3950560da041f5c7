package dev.dmaplane.rdma.spi;

import org.osgi.annotation.versioning.ConsumerType;

/**
 * Where an iWARP driver reports what happens to a listener or a connection ({@code iw_cm_handler} of
 * {@code struct iw_cm_id}). Called on the driver's threads, one event at a time per listener or connection; it must
 * not block for long and may call back into the driver (accept, reject, disconnect).
 */
@ConsumerType
@FunctionalInterface
public interface IwCmHandler {
    void event(IwCmEvent event);
}
