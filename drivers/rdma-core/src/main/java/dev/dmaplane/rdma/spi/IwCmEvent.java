package dev.dmaplane.rdma.spi;

import dev.dmaplane.errno.Errno;

import java.net.InetSocketAddress;

/**
 * One event of an iWARP connection ({@code struct iw_cm_event}).
 *
 * @param type        what happened
 * @param status      null for success, else the errno ({@code ECONNRESET}: rejected or reset, as siw reports both;
 *                    {@code ECONNREFUSED}: refused; {@code ETIMEDOUT}: no MPA reply in time)
 * @param local       this side's address
 * @param remote      the peer's address
 * @param privateData the private data of the peer's MPA request or reply (empty when none)
 * @param ord         the ORD {@code siw_cm_upcall} signals: the initiator's as it asked (CONNECT_REQUEST, 0 when the
 *                    request carried none: MPA revision 1); this side's own as negotiated (CONNECT_REPLY, ESTABLISHED;
 *                    its own as given under MPA revision 1)
 * @param ird         the IRD, likewise
 * @param request     the request to accept or reject (CONNECT_REQUEST), else null
 */
public record IwCmEvent(Type type, Errno status, InetSocketAddress local, InetSocketAddress remote, byte[] privateData,
                        int ord, int ird, IwConnRequest request) {
    /** {@code enum iw_cm_event_type}. */
    public enum Type {
        /** An MPA request arrived at a listener. */
        CONNECT_REQUEST,
        /** The peer's MPA reply arrived (or the attempt failed): the active side's outcome. */
        CONNECT_REPLY,
        /** The passive side's connection is up (its MPA reply was sent). */
        ESTABLISHED,
        /** The peer closed its half of the stream (TCP FIN); siw reports none for a TERMINATE, only CLOSE. */
        DISCONNECT,
        /** The connection is gone; no event follows. */
        CLOSE
    }

    public IwCmEvent {
        privateData = privateData == null ? new byte[0] : privateData.clone();
    }

    @Override
    public byte[] privateData() {
        return privateData.clone();
    }
}
