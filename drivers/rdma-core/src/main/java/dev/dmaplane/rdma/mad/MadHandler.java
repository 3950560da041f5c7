package dev.dmaplane.rdma.mad;

import org.osgi.annotation.versioning.ConsumerType;

/**
 * What a MAD agent's owner implements ({@code recv_handler} and {@code send_handler} of {@code
 * ib_register_mad_agent}). Both run on the device's MAD thread, one call at a time, with no core lock held.
 */
@ConsumerType
public interface MadHandler {
    /** A request of the agent's class and version arrived ({@code recv_handler} without a send). */
    void received(MadAddress from, Mad mad);

    /**
     * A send ended ({@code send_handler} with {@code ib_mad_send_wc.send_buf}): {@code send} is the handle
     * {@link MadAgent#send} returned, with its context; {@code response} is the MAD that answered it, or null.
     */
    void sendDone(MadSendBuf send, MadSendStatus status, Mad response);
}
