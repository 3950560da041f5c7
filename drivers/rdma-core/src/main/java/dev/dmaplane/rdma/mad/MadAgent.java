package dev.dmaplane.rdma.mad;

import org.osgi.annotation.versioning.ProviderType;

/**
 * A registration for one management class and class version on one port ({@code struct ib_mad_agent}): it sends
 * MADs through the port's GSI (QP1) and receives the requests of its class. Transaction IDs it makes carry its
 * number in their upper 32 bits ({@code hi_tid}), which routes responses back to it.
 */
@ProviderType
public interface MadAgent {
    /** The port, 1-based. */
    int port();

    /** The upper 32 bits of this agent's transaction IDs ({@code mad_agent->hi_tid}). */
    int hiTid();

    /**
     * {@code ib_post_send_mad}: sends {@code mad} to {@code to}. With {@code timeoutMs} above 0 the send waits for a
     * response: it is sent again after each timeout, {@code retries} times, and then ends with
     * {@link MadSendStatus#TIMEOUT}, unless a response with its transaction ID arrives or it is
     * {@link #cancel cancelled}. Without a timeout it ends as soon as it left.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a negative timeout or retry count, a MAD of
     *                                           another class or a transaction ID with another agent's upper bits,
     *                                           or one already waiting; {@code ENODEV} after the agent or the
     *                                           device went away
     */
    void send(MadAddress to, Mad mad, int timeoutMs, int retries);

    /**
     * {@code ib_cancel_mad}: ends the send of transaction {@code tid} with {@link MadSendStatus#CANCELED}, if it still
     * waits; false when none does.
     */
    boolean cancel(long tid);

    /**
     * {@code ib_modify_mad}: the send of transaction {@code tid}, if it still waits, now waits {@code timeoutMs} for
     * its response, counted from now, and so does each of its retries left (as a CM's MRA asks, {@code cm.c}'s
     * {@code cm_mra_handler}); 0 cancels it as {@link #cancel} does. False when no send of this agent waits.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a negative timeout
     */
    boolean modify(long tid, int timeoutMs);

    /** {@code ib_unregister_mad_agent}: cancels its sends; no handler call follows the return. Idempotent. */
    void unregister();
}
