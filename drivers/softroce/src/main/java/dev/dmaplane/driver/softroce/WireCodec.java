package dev.dmaplane.driver.softroce;

import dev.dmaplane.driver.softroce.Opcode.Service;
import dev.dmaplane.driver.softroce.Packet.Op;
import dev.dmaplane.rdma.verbs.Gid;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * RoCEv2 packets as bytes ({@code rxe_hdr.h}, {@code rxe_net.c}, {@code rxe_icrc.c}; IBTA annex A17): an IPv4
 * header (no options, DF, TTL 64, identification 0), UDP to port {@value #ROCE_PORT} (checksum 0, as rxe sends it),
 * the BTH, the extension headers of the opcode ({@link Opcode}: DETH, RETH, AtomicETH, AETH, AtomicAckETH, ImmDt,
 * IETH), the payload padded to 4 bytes, and the ICRC: CRC-32 over eight bytes of 0xFF (the masked LRH), the IP and
 * UDP headers with TOS, TTL, the IP checksum and the UDP checksum masked to ones, the BTH with its resv8a byte
 * (FECN, BECN) masked to ones, the rest of the packet, stored little-endian as rxe stores it. A train of
 * {@code count} packets becomes {@code count} datagrams. Decoding reads one datagram back into a {@link Packet}
 * (count 1, payload bytes) or says why it is refused.
 */
final class WireCodec {
    static final int ROCE_PORT = 4791;
    static final int IP = 20;
    static final int UDP = 8;
    static final int BTH = 12;
    static final int ICRC = 4;
    /** The default partition key, full membership: the port's only P_Key table entry. */
    static final int DEFAULT_PKEY = 0xFFFF;
    /** The largest payload of one packet (path MTU 4096). */
    static final int MAX_PAYLOAD = 4096;
    /** Offset of the BTH in an encoded datagram. */
    static final int BTH_AT = IP + UDP;
    /**
     * Bytes of a UDP payload a receiver puts after the IP and UDP headers it rebuilds, for {@link #decode(byte[],
     * MemorySegment, boolean)}: the BTH and the longest run of extended headers an opcode has.
     */
    static final int HEAD = BTH + 64;

    private WireCodec() {
    }

    /** Receives each datagram {@link #encode} makes: an IPv4 packet in {@code datagram[0, length)}. */
    @FunctionalInterface
    interface Sink {
        void datagram(byte[] datagram, int length);
    }

    /** Where {@link #encode} writes each datagram it makes, in place: a socket's send slot, or a new array. */
    interface Slots {
        /** Room for the {@code udpLen} bytes of UDP payload of the next datagram; {@link #encode} writes them all. */
        MemorySegment room(int udpLen);

        /**
         * The datagram is written: its IPv4 and UDP headers in {@code head[0, BTH_AT)}, its UDP payload in the room;
         * {@code head} holds them only during the call (the encoder patches it for the next datagram).
         */
        void filled(byte[] head, MemorySegment udp);
    }

    /** Why a datagram was refused: the receive-side drop counters of {@link Counters}. */
    enum Drop {
        MALFORMED, BAD_ICRC, BAD_QPN, BAD_PKEY, BAD_QKEY
    }

    /** What {@link #decode} made of a datagram. */
    sealed interface Decoded {
    }

    /** A well-formed packet with a good ICRC, its transport service and P_Key. */
    record Accepted(Packet packet, Service service, int pkey) implements Decoded {
    }

    /** A refused datagram: the reason and a message naming the bad value. */
    record Refused(Drop drop, String why) implements Decoded {
    }

    /**
     * The datagrams of {@code p} sent by a QP of {@code service} from UDP port {@code sport}: one per packet of a
     * train, the payload of a train split at the packets' MTU.
     */
    static void encode(Packet p, Service service, int sport, Sink out) {
        encode(p, service, sport, new Slots() {
            private byte[] b;

            @Override
            public MemorySegment room(int udpLen) {
                b = new byte[BTH_AT + udpLen];
                return MemorySegment.ofArray(b).asSlice(BTH_AT);
            }

            @Override
            public void filled(byte[] head, MemorySegment udp) {
                System.arraycopy(head, 0, b, 0, BTH_AT);
                out.datagram(b, b.length);
            }
        });
    }

    /** {@link #encode(Packet, Service, int, Sink)}, each datagram written in place where {@code out} says. */
    static void encode(Packet p, Service service, int sport, Slots out) {
        Headers h = new Headers(p.sgid(), p.dgid(), sport);
        long len = p.payload().length();
        if (p.payload() instanceof Packet.Payload.Messages m) {
            for (int i = 0; i < p.count(); i++) {
                datagram(h, p, Opcode.of(service, Op.WRITE, true, true), Packet.psnAdd(p.psn(), i),
                        true, m.vas()[i], m.lengths()[i], m.message(i), 0, m.lengths()[i], out);
            }
            return;
        }
        int mtu = mtuOf(len, p.count());
        for (int i = 0; i < p.count(); i++) {
            boolean first = p.first() && i == 0;
            boolean last = p.last() && i == p.count() - 1;
            long from = (long) i * mtu;
            long n = p.count() == 1 ? len : Math.min(mtu, len - from);
            datagram(h, p, Opcode.of(service, p.op(), first, last), Packet.psnAdd(p.psn(), i),
                    p.ackReq() && i == p.count() - 1, p.va(), p.dmaLen(), p.payload(), from, n, out);
        }
    }

    /** The MTU a train of {@code count} packets carrying {@code len} bytes was cut at (only a full train has one). */
    private static int mtuOf(long len, int count) {
        if (count <= 1) {
            return MAX_PAYLOAD;
        }
        for (int mtu = 256; mtu <= MAX_PAYLOAD; mtu <<= 1) {
            if (Packet.packetsFor(len, mtu) == count) {
                return mtu;
            }
        }
        throw new IllegalArgumentException("a train of " + count + " packets cannot carry " + len + " bytes");
    }

    /**
     * The headers of the datagrams of one packet or train, built once and patched per datagram (as an HCA keeps a
     * header template per QP): the IPv4 and UDP headers are rewritten only when a datagram's length differs from the
     * one before, the BTH and extension headers per datagram; the ICRC's masked copy of the headers
     * ({@link Icrc}) is kept beside them.
     */
    private static final class Headers {
        final byte[] b = new byte[BTH_AT + HEAD];
        final MemorySegment seg = MemorySegment.ofArray(b);
        final Icrc icrc = new Icrc();
        final int src;
        final int dst;
        final int sport;
        /** The UDP payload length the IPv4 and UDP headers in {@link #b} are for, or -1. */
        int udpLen = -1;

        Headers(Gid sgid, Gid dgid, int sport) {
            if (!sgid.isIpv4Mapped() || !dgid.isIpv4Mapped()) {
                throw new IllegalArgumentException("RoCEv2 over IPv4 needs IPv4-mapped GIDs, not " + sgid + " -> "
                        + dgid);
            }
            this.src = ipv4(sgid);
            this.dst = ipv4(dgid);
            this.sport = sport;
        }

        /** The IPv4 and UDP headers of a datagram of {@code udpPayload} bytes of UDP payload, in {@link #b}. */
        void ipUdp(int udpPayload) {
            if (udpPayload != udpLen) {
                WireCodec.ipUdp(b, src, dst, sport, ROCE_PORT, udpPayload);
                icrc.ipUdp(b);
                udpLen = udpPayload;
            }
        }
    }

    private static void datagram(Headers h, Packet p, Opcode op, int psn, boolean ackReq, long va, long dmaLen,
                                 Packet.Payload payload, long from, long n, Slots out) {
        if (n > MAX_PAYLOAD) {
            throw new IllegalArgumentException("payload of " + n + " bytes over the largest MTU " + MAX_PAYLOAD);
        }
        int plen = (int) n;
        int pad = -plen & 3;
        int udpPayload = BTH + op.extLength() + plen + pad + ICRC;
        h.ipUdp(udpPayload);
        byte[] b = h.b;
        MemorySegment s = h.seg;
        int at = BTH_AT;
        b[at] = (byte) op.code;
        b[at + 1] = (byte) ((p.se() && op.last ? 0x80 : 0) | pad << 4); // SE, MigReq 0, PadCnt, TVer 0
        put16(b, at + 2, DEFAULT_PKEY);
        b[at + 4] = 0; // resv8a (FECN, BECN)
        put24(b, at + 5, p.destQpn());
        b[at + 8] = (byte) (ackReq ? 0x80 : 0);
        put24(b, at + 9, psn);
        at += BTH;
        if (op.has(Opcode.DETH)) {
            put32(b, at, p.qkey());
            b[at + 4] = 0;
            put24(b, at + 5, p.srcQpn());
            at += 8;
        }
        if (op.has(Opcode.RETH)) {
            s.set(BE_LONG, at, va);
            put32(b, at + 8, p.rkey());
            put32(b, at + 12, (int) dmaLen);
            at += 16;
        }
        if (op.has(Opcode.ATMETH)) {
            s.set(BE_LONG, at, p.va());
            put32(b, at + 8, p.rkey());
            s.set(BE_LONG, at + 12, p.swapAdd());
            s.set(BE_LONG, at + 20, p.compare());
            at += 28;
        }
        if (op.has(Opcode.AETH)) {
            b[at] = (byte) p.syndrome();
            put24(b, at + 1, p.msn());
            at += 4;
        }
        if (op.has(Opcode.ATMACK)) {
            s.set(BE_LONG, at, p.orig());
            at += 8;
        }
        if (op.has(Opcode.IMM) || op.has(Opcode.IETH)) {
            put32(b, at, p.imm());
            at += 4;
        }
        int hdr = at - BTH_AT;
        MemorySegment udp = out.room(udpPayload);
        MemorySegment.copy(s, BTH_AT, udp, 0, hdr);
        if (plen > 0) {
            payload.copyTo(from, udp.asSlice(hdr, plen));
        }
        int end = hdr + plen;
        for (int i = 0; i < pad; i++) {
            udp.set(ValueLayout.JAVA_BYTE, end++, (byte) 0);
        }
        udp.set(LE_INT, end, h.icrc.of(b, udp, BTH_AT + end));
        out.filled(b, udp);
    }

    /**
     * Writes the IPv4 header (identification 0, DF, TTL 64, protocol UDP, its checksum) and the UDP header
     * (checksum 0) of a datagram carrying {@code udpPayload} bytes into {@code b[0, 28)}: the encoder's headers,
     * and the ones a receiver on a UDP socket puts back in front of what it read to check the ICRC.
     */
    static void ipUdp(byte[] b, Gid src, Gid dst, int sport, int dport, int udpPayload) {
        if (!src.isIpv4Mapped() || !dst.isIpv4Mapped()) {
            throw new IllegalArgumentException("RoCEv2 over IPv4 needs IPv4-mapped GIDs, not " + src + " -> " + dst);
        }
        ipUdp(b, ipv4(src), ipv4(dst), sport, dport, udpPayload);
    }

    /** {@link #ipUdp(byte[], Gid, Gid, int, int, int)} between IPv4 addresses given as ints in network order. */
    static void ipUdp(byte[] b, int src, int dst, int sport, int dport, int udpPayload) {
        int total = IP + UDP + udpPayload;
        b[0] = 0x45;
        b[1] = 0;
        put16(b, 2, total);
        put16(b, 4, 0);
        put16(b, 6, 0x4000);
        b[8] = 64;
        b[9] = 17;
        put16(b, 10, 0);
        put32(b, 12, src);
        put32(b, 16, dst);
        put16(b, 10, ipChecksum(b));
        put16(b, IP, sport);
        put16(b, IP + 2, dport);
        put16(b, IP + 4, UDP + udpPayload);
        put16(b, IP + 6, 0);
    }

    /** The IPv4 address of an IPv4-mapped GID, as an int in network order. */
    static int ipv4(Gid g) {
        return get32(g.raw(), 12);
    }

    /** The IPv4 header checksum (RFC 791) of {@code b[0, 20)}. */
    static int ipChecksum(byte[] b) {
        int sum = 0;
        for (int i = 0; i < IP; i += 2) {
            sum += (b[i] & 0xff) << 8 | (b[i + 1] & 0xff);
        }
        while ((sum >>> 16) != 0) {
            sum = (sum & 0xffff) + (sum >>> 16);
        }
        return ~sum & 0xffff;
    }

    /**
     * The ICRC of the datagram {@code b[0, end)} (IPv4 and UDP headers, BTH and the rest up to the ICRC):
     * {@code rxe_icrc_hdr} and {@code rxe_icrc_generate}. The masked fields are copied, never changed in place.
     */
    static int icrc(byte[] b, int end) {
        return icrc(b, MemorySegment.ofArray(b).asSlice(BTH_AT), end);
    }

    /**
     * The ICRC of a datagram whose IPv4 and UDP headers and BTH are in {@code head[0, BTH_AT + BTH)} and whose UDP
     * payload is {@code udp}, up to {@code end} (an offset in the datagram).
     */
    static int icrc(byte[] head, MemorySegment udp, int end) {
        Icrc c = new Icrc();
        c.ipUdp(head);
        return c.of(head, udp, end);
    }

    /**
     * Reads the IPv4 datagram {@code b[0, len)}: headers, opcode, lengths and ICRC checked ({@code rxe_rcv}'s
     * {@code hdr_check} for what the packet alone shows, and {@code rxe_icrc_check}); the keys and the QP are
     * checked by the receiver, who knows them.
     */
    static Decoded decode(byte[] b, int len) {
        if (len < BTH_AT + BTH + ICRC || len > b.length) {
            return new Refused(Drop.MALFORMED, "datagram of " + len + " bytes shorter than IP, UDP, BTH and ICRC");
        }
        return decode(b, MemorySegment.ofArray(b).asSlice(BTH_AT, len - BTH_AT), false);
    }

    /**
     * {@link #decode(byte[], int)} of a datagram received on a UDP socket: its IPv4 and UDP headers are in
     * {@code b[0, BTH_AT)}, followed by at least the first {@link #HEAD} bytes of its UDP payload (all of a shorter
     * one), which is {@code udp}. When {@code borrow}, the packet's payload is the range of {@code udp} that holds it
     * ({@link Packet.Payload.Received}, valid as long as {@code udp} is), otherwise a copy.
     */
    static Decoded decode(byte[] b, MemorySegment udp, boolean borrow) {
        Icrc icrc = new Icrc();
        icrc.ipUdp(b);
        return decode(b, udp, borrow, icrc, null, null);
    }

    /**
     * {@link #decode(byte[], MemorySegment, boolean)} by a receiver that keeps its state between datagrams: {@code icrc}
     * was given the IPv4 and UDP headers in {@code b[0, BTH_AT)} ({@link Icrc#ipUdp}), and {@code src} and {@code dst},
     * when not null, are the GIDs of their source and destination addresses.
     */
    static Decoded decode(byte[] b, MemorySegment udp, boolean borrow, Icrc icrc, Gid src, Gid dst) {
        int len = BTH_AT + (int) udp.byteSize();
        if (udp.byteSize() < BTH + ICRC || udp.byteSize() > 0xffff - IP - UDP) {
            return new Refused(Drop.MALFORMED, "datagram of " + len + " bytes: not as long as IP, UDP, BTH and ICRC,"
                    + " or longer than IPv4 carries");
        }
        if ((b[0] & 0xff) != 0x45 || b[9] != 17 || get16(b, 2) != len) {
            return new Refused(Drop.MALFORMED, String.format("IPv4 header %02x proto %d length %d of a %d-byte datagram",
                    b[0] & 0xff, b[9] & 0xff, get16(b, 2), len));
        }
        if (get16(b, IP + 2) != ROCE_PORT || get16(b, IP + 4) != len - IP) {
            return new Refused(Drop.MALFORMED, "UDP port " + get16(b, IP + 2) + " length " + get16(b, IP + 4));
        }
        int at = BTH_AT;
        Opcode op = Opcode.of(b[at]);
        if (op == null) {
            return new Refused(Drop.MALFORMED, String.format("unknown BTH opcode 0x%02x", b[at] & 0xff));
        }
        int flags = b[at + 1] & 0xff;
        if ((flags & 0x0f) != 0) {
            return new Refused(Drop.MALFORMED, "BTH transport header version " + (flags & 0x0f));
        }
        int pad = flags >>> 4 & 3;
        int payload = len - BTH_AT - BTH - op.extLength() - pad - ICRC;
        if (payload < 0 || (!op.payload && payload + pad != 0) || payload > MAX_PAYLOAD) {
            return new Refused(Drop.MALFORMED, op + " with " + (len - BTH_AT) + " bytes of UDP payload, pad " + pad);
        }
        int want = udp.get(LE_INT, len - ICRC - BTH_AT);
        int got = icrc.of(b, udp, len - ICRC);
        if (want != got) {
            return new Refused(Drop.BAD_ICRC, String.format("ICRC %08x, computed %08x", want, got));
        }
        MemorySegment data = udp.asSlice(len - ICRC - pad - payload - BTH_AT, payload);
        return new Accepted(packet(b, op, flags, src, dst, payload == 0 ? Packet.Payload.NONE : borrow
                ? new Packet.Payload.Received(data) : Packet.Payload.Bytes.of(data.toArray(ValueLayout.JAVA_BYTE))),
                op.service(), get16(b, at + 2));
    }

    private static Packet packet(byte[] b, Opcode op, int flags, Gid src, Gid dst, Packet.Payload data) {
        MemorySegment s = MemorySegment.ofArray(b);
        int at = BTH_AT;
        int destQpn = get24(b, at + 5);
        boolean ackReq = (b[at + 8] & 0x80) != 0;
        int psn = get24(b, at + 9);
        at += BTH;
        int qkey = 0;
        int srcQpn = 0;
        long va = 0;
        int rkey = 0;
        long dmaLen = op.first && op.last && (op.op == Op.SEND || op.op == Op.SEND_IMM || op.op == Op.SEND_INV)
                ? data.length() : 0;
        long swapAdd = 0;
        long compare = 0;
        int syndrome = 0;
        int msn = 0;
        long orig = 0;
        int imm = 0;
        if (op.has(Opcode.DETH)) {
            qkey = get32(b, at);
            srcQpn = get24(b, at + 5);
            at += 8;
        }
        if (op.has(Opcode.RETH)) {
            va = s.get(BE_LONG, at);
            rkey = get32(b, at + 8);
            dmaLen = get32(b, at + 12) & 0xffffffffL;
            at += 16;
        }
        if (op.has(Opcode.ATMETH)) {
            va = s.get(BE_LONG, at);
            rkey = get32(b, at + 8);
            swapAdd = s.get(BE_LONG, at + 12);
            compare = s.get(BE_LONG, at + 20);
            dmaLen = 8;
            at += 28;
        }
        if (op.has(Opcode.AETH)) {
            syndrome = b[at] & 0xff;
            msn = get24(b, at + 1);
            at += 4;
        }
        if (op.has(Opcode.ATMACK)) {
            orig = s.get(BE_LONG, at);
            at += 8;
        }
        if (op.has(Opcode.IMM) || op.has(Opcode.IETH)) {
            imm = get32(b, at);
        }
        return new Packet(src != null ? src : v4mapped(b, 12), dst != null ? dst : v4mapped(b, 16), srcQpn, destQpn, op.op, op.first, op.last,
                psn, 1, ackReq, va, rkey, dmaLen, imm, swapAdd, compare, syndrome, msn, orig, qkey, data,
                (flags & 0x80) != 0);
    }

    /** The IPv4-mapped GID of the IPv4 address in {@code b[at, at + 4)}. */
    static Gid v4mapped(byte[] b, int at) {
        byte[] g = new byte[16];
        g[10] = (byte) 0xff;
        g[11] = (byte) 0xff;
        System.arraycopy(b, at, g, 12, 4);
        return Gid.of(g);
    }

    private static final ValueLayout.OfLong BE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    static void put16(byte[] b, int at, int v) {
        b[at] = (byte) (v >>> 8);
        b[at + 1] = (byte) v;
    }

    static void put24(byte[] b, int at, int v) {
        b[at] = (byte) (v >>> 16);
        b[at + 1] = (byte) (v >>> 8);
        b[at + 2] = (byte) v;
    }

    static void put32(byte[] b, int at, int v) {
        b[at] = (byte) (v >>> 24);
        put24(b, at + 1, v);
    }

    static int get16(byte[] b, int at) {
        return (b[at] & 0xff) << 8 | (b[at + 1] & 0xff);
    }

    static int get24(byte[] b, int at) {
        return (b[at] & 0xff) << 16 | (b[at + 1] & 0xff) << 8 | (b[at + 2] & 0xff);
    }

    static int get32(byte[] b, int at) {
        return (b[at] & 0xff) << 24 | get24(b, at + 1);
    }
}
