package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.spi.SendWqe;

/** An RC message in flight ({@code rxe_send_wqe}'s requester state): its work request, PSN range, payload or read buffer. */
final class Msg {
    final SendWqe w;
    int firstPsn;
    int lastPsn;
    /**
     * The last PSN of this message a coalesced ACK covered, or of a read the last response taken in order
     * (firstPsn - 1 while none).
     */
    int ackedThrough;
    /** The response PSN a read was last asked again from (-1: never). */
    int rerequested = -1;
    int mtu;
    byte[] data;
    /** A short payload leased for its first transmission only ({@link Requester}); null once sent. */
    Packet.Payload firstPayload;
    byte[] readBuf;

    private Packet.Payload segment;

    Msg(SendWqe w) {
        this.w = w;
    }

    /** The gathered payload, made once and sliced into packets on every (re)transmission. */
    Packet.Payload segment() {
        if (segment == null) {
            segment = Packet.Payload.Bytes.of(data);
        }
        return segment;
    }
}
