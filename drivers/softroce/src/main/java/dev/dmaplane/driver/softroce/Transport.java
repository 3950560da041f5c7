package dev.dmaplane.driver.softroce;

import java.util.List;

/**
 * How an HCA's packets reach the other HCAs ({@code rxe_net.c}'s send path): the in-process {@link Fabric}, which
 * hands packets over by reference, or a {@link UdpTransport}, which sends them as RoCEv2 datagrams.
 */
interface Transport {
    /** Sends a burst, in order; called by the thread running the sending engine, while payload leases are open. */
    void send(List<Packet> burst);

    /** Whether senders must send single packets (loss or reordering injection is on), not trains. */
    boolean perPacket();

    /** Counts {@code n} packets the sender dropped (no carrier). */
    void dropped(int n);

    /**
     * How many PSNs an RC requester may have sent and not seen acknowledged before it starts no more messages
     * ({@code rxe_req.c}: {@code RXE_MAX_UNACKED_PSNS}); a message is started whole, and one at a time when nothing is
     * in flight. A transport that loses what overflows its buffers bounds it; a lossless one need not.
     */
    default int maxUnackedPsns() {
        return Integer.MAX_VALUE;
    }
}
