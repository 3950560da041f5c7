package dev.dmaplane.rdma.spi;

import org.osgi.annotation.versioning.ConsumerType;

import java.net.InetSocketAddress;

/**
 * An MPA request that arrived at a listener and waits for an answer (the {@code iw_cm_id} of a CONNECT_REQUEST).
 * Exactly one of {@link #accept} and {@link #reject} may be called.
 */
@ConsumerType
public interface IwConnRequest {
    InetSocketAddress local();

    InetSocketAddress remote();

    /**
     * {@code accept}: binds QP {@code qpn} (in INIT or RTR) to the connection, moves it to RTS and sends the MPA
     * reply with {@code param}'s private data; {@link IwCmEvent.Type#ESTABLISHED} follows on {@code handler}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a request answered already, or for a QP that does
     *                                           not exist, which is looked up first ({@code iw_cm_accept},
     *                                           {@code siw_accept}) and leaves the request to be answered;
     *                                           {@code EINVAL} also for a QP past RTR or connected already, an ORD or
     *                                           IRD above the device's or private data beyond the reply's room, which
     *                                           ends the connection as {@code siw_accept}'s error path does (the
     *                                           request is answered then); {@code ECONNRESET} when the peer went away
     *                                           meanwhile
     */
    IwConnection accept(int qpn, IwConnParam param, IwCmHandler handler);

    /**
     * {@code reject}: sends the MPA reply with the reject bit and {@code privateData}, then closes the stream.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a request answered already or private data over
     *                                           the MPA limit
     */
    void reject(byte[] privateData);
}
