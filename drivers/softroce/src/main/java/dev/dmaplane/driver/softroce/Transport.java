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
}
