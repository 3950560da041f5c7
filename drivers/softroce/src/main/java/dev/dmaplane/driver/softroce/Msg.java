package dev.dmaplane.driver.softroce;

import dev.dmaplane.rdma.spi.SendWqe;

import java.util.BitSet;

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
    int mtu;
    byte[] data;
    /** A short payload leased for its first transmission only ({@link Requester}); null once sent. */
    Packet.Payload firstPayload;
    byte[] readBuf;
    /** The responses of a READ taken, by index in the read, those past {@link #ackedThrough} out of order included. */
    final BitSet got = new BitSet();
    /** Whether an atomic's acknowledgement came, and the original value it carried. */
    boolean resultIn;
    long orig;

    private Packet.Payload segment;

    Msg(SendWqe w) {
        this.w = w;
    }

    /** How many PSNs the message has (a READ's responses). */
    int responses() {
        return Packet.psnDiff(lastPsn, firstPsn) + 1;
    }

    /** The gathered payload, made once and sliced into packets on every (re)transmission. */
    Packet.Payload segment() {
        if (segment == null) {
            segment = Packet.Payload.Bytes.of(data);
        }
        return segment;
    }
}
