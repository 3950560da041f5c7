package dev.dmaplane.rdma.mad;

import org.osgi.annotation.versioning.ProviderType;

/**
 * One MAD posted by an agent ({@code struct ib_mad_send_buf}): {@link MadAgent#send} returns it,
 * {@link MadAgent#cancel} and {@link MadAgent#modify} name the send by it, and {@link MadHandler#sendDone} hands it
 * back with the context its sender attached ({@code send_buf->context}, where {@code cm.c} keeps its connection). Two
 * sends are two handles even when their MADs carry one transaction ID.
 */
@ProviderType
public interface MadSendBuf {
    /** The agent that sent it ({@code send_buf->mad_agent}). */
    MadAgent agent();

    /** Where it went ({@code send_buf->ah} and {@code remote_qpn}). */
    MadAddress to();

    /** The MAD as posted ({@code send_buf->mad}). */
    Mad mad();

    /** What the sender attached to it ({@code send_buf->context[0]}), or null. */
    Object context();
}
