package dev.dmaplane.driver.softroce;

import java.lang.foreign.MemorySegment;
import java.util.zip.CRC32;

/**
 * The invariant CRC of a RoCEv2 datagram ({@code rxe_icrc.c}, IBTA annex A17.3.3): CRC-32 over eight bytes of ones
 * (the masked LRH), the IPv4 and UDP headers with TOS, TTL, the IP checksum and the UDP checksum masked to ones, the
 * BTH with its resv8a byte masked to ones, and the rest of the packet up to the ICRC. It keeps the masked copy of the
 * headers and the CRC state between datagrams, so that the datagrams of a train, whose IPv4 and UDP headers are the
 * same, mask them once; one instance serves one thread.
 */
final class Icrc {
    /** Offset of the IPv4 header in {@link #masked}: after the eight bytes of the masked LRH. */
    private static final int LRH = 8;
    private final byte[] masked = new byte[LRH + WireCodec.BTH_AT + WireCodec.BTH];
    private final CRC32 crc = new CRC32();

    Icrc() {
        for (int i = 0; i < LRH; i++) {
            masked[i] = (byte) 0xff;
        }
    }

    /** Takes the IPv4 and UDP headers of the next datagrams from {@code head[0, BTH_AT)}, masked. */
    void ipUdp(byte[] head) {
        System.arraycopy(head, 0, masked, LRH, WireCodec.BTH_AT);
        masked[LRH + 1] = (byte) 0xff; // TOS: DSCP and ECN
        masked[LRH + 8] = (byte) 0xff; // TTL
        masked[LRH + 10] = (byte) 0xff; // IP header checksum
        masked[LRH + 11] = (byte) 0xff;
        masked[LRH + WireCodec.IP + 6] = (byte) 0xff; // UDP checksum
        masked[LRH + WireCodec.IP + 7] = (byte) 0xff;
    }

    /**
     * The ICRC of a datagram whose IPv4 and UDP headers were given to {@link #ipUdp}, whose BTH is in
     * {@code head[BTH_AT, BTH_AT + BTH)} and whose UDP payload is {@code udp}, up to {@code end} (an offset in the
     * datagram). The masked fields are copied, never changed in place.
     */
    int of(byte[] head, MemorySegment udp, int end) {
        System.arraycopy(head, WireCodec.BTH_AT, masked, LRH + WireCodec.BTH_AT, WireCodec.BTH);
        masked[LRH + WireCodec.BTH_AT + 4] = (byte) 0xff; // BTH resv8a: FECN, BECN, reserved
        crc.reset();
        crc.update(masked);
        crc.update(udp.asSlice(WireCodec.BTH, end - WireCodec.BTH_AT - WireCodec.BTH).asByteBuffer());
        return (int) crc.getValue();
    }
}
