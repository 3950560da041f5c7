package dev.dmaplane.rdma.mad;

import org.osgi.annotation.versioning.ProviderType;

/**
 * A registration for one management class and class version on one port ({@code struct ib_mad_agent}): it sends
 * MADs through the port's GSI (QP1) and receives the requests of its class. A response comes back to the agent
 * whose number ({@code hi_tid}) its transaction ID carries in the upper 32 bits, so a request that wants one carries
 * the agent's.
 */
@ProviderType
public interface MadAgent {
    /** The port, 1-based. */
    int port();

    /** The upper 32 bits of this agent's transaction IDs ({@code mad_agent->hi_tid}). */
    int hiTid();

    /**
     * {@code ib_create_send_mad} and {@code ib_post_send_mad}: sends {@code mad} to {@code to} as it was built, its
     * transaction ID included (mad.c checks none: a request carries the agent's {@link #hiTid} when the caller put it
     * there, as {@code cm_form_tid} does; an answer may carry the TID of the message it answers). With
     * {@code timeoutMs} above 0 the send waits for a response: it is sent again after each timeout, {@code retries}
     * times, and then ends with {@link MadSendStatus#TIMEOUT}, unless a response answers it or it is
     * {@link #cancel cancelled}. A response answers it when its TID's upper 32 bits name this agent and it carries the
     * send's TID and class and comes from the GID the send went to ({@code find_mad_agent}, {@code ib_find_send_mad});
     * of several sends waiting with one TID, the first sent. Without a timeout the send ends as soon as it left.
     *
     * @param context what {@link MadHandler#sendDone} finds in the returned handle ({@code send_buf->context}), or null
     * @return the send, for {@link #cancel}, {@link #modify} and {@link MadHandler#sendDone}
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a negative timeout or retry count; {@code ENODEV}
     *                                           after the agent or the device went away
     */
    MadSendBuf send(MadAddress to, Mad mad, int timeoutMs, int retries, Object context);

    /**
     * {@code ib_cancel_mad}: ends {@code send} with {@link MadSendStatus#CANCELED}, if it still waits; false when it
     * does not (answered, timed out, cancelled, sent without a timeout, or another agent's).
     */
    boolean cancel(MadSendBuf send);

    /**
     * {@code ib_modify_mad}: {@code send}, if it still waits, now waits {@code timeoutMs} for its response, counted
     * from now, and so does each of its retries left (as a CM's MRA asks, {@code cm.c}'s {@code cm_mra_handler});
     * 0 cancels it as {@link #cancel} does. False when it no longer waits or is another agent's.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a negative timeout
     */
    boolean modify(MadSendBuf send, int timeoutMs);

    /** {@code ib_unregister_mad_agent}: cancels its sends; no handler call follows the return. Idempotent. */
    void unregister();
}
