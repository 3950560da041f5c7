package dev.dmaplane.driver.softroce;

import dev.dmaplane.driver.softroce.Opcode.Service;
import dev.dmaplane.driver.softroce.Packet.Op;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.DatagramChannel;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.SequencedMap;

import static dev.dmaplane.rdma.verbs.SendFlags.SIGNALED;
import static dev.dmaplane.testing.Eventually.eventually;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The receive-side checks of {@code rxe_recv.c} ({@code rxe_rcv}: {@code hdr_check} with {@code check_type_state}
 * and {@code check_keys}, then {@code rxe_icrc_check}): datagrams sent from a raw UDP socket to an HCA's port 4791
 * with a bad ICRC, a destination QP that does not exist or is of another transport service, a P_Key outside the
 * port's table, a wrong Q_Key, random bytes and truncated headers are each dropped and counted under their reason
 * in {@code rdma statistic} ({@code dmaplane_drop_*}), nothing is thrown, and the HCA keeps working.
 */
@Timeout(60)
class WireReceiveTest {
    private static final Duration WAIT = Duration.ofSeconds(10);
    private final UdpHcas u = new UdpHcas(11, 12);

    @AfterEach
    void close() {
        u.close();
        assertEquals(0, Hcas.softroceThreads());
    }

    private SequencedMap<String, Long> stats() {
        return u.ca.device("rxe0").orElseThrow().hwCounters(1);
    }

    private void awaitDrop(String reason, long n) {
        eventually(() -> stats().get("dmaplane_drop_" + reason) == n, WAIT,
                "dmaplane_drop_" + reason + " reaches " + n + ": " + stats());
    }

    /** The datagrams of {@code p}, encoded as from {@code from}'s address and port. */
    private static List<byte[]> encode(Packet p, Service s, InetSocketAddress from) {
        List<byte[]> out = new ArrayList<>();
        WireCodec.encode(p, s, from.getPort(), (d, n) -> out.add(Arrays.copyOf(d, n)));
        return out;
    }

    /** Sends the UDP payload of the datagram {@code d} (what follows its IP and UDP headers) to rxe0 of a. */
    private void sendRaw(DatagramChannel ch, byte[] d, int from) throws IOException {
        ch.send(ByteBuffer.wrap(d, from, d.length - from), new InetSocketAddress(UdpHcas.loopback(11),
                WireCodec.ROCE_PORT));
    }

    /** Re-stamps the ICRC of {@code d} after a header was changed on purpose. */
    private static void reseal(byte[] d) {
        int icrc = WireCodec.icrc(d, d.length - WireCodec.ICRC);
        for (int i = 0; i < 4; i++) {
            d[d.length - 4 + i] = (byte) (icrc >>> (8 * i));
        }
    }

    @Test
    void badPacketsAreDroppedAndCountedByReasonAndTheHcaKeepsWorking() throws IOException {
        QueuePair ud = u.a.ud();
        ud.modify(QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(1).qkey(0x11111111).build());
        ud.modify(QpAttr.builder().state(QpState.RTR).build());
        QueuePair[] rc = u.pair();
        Map<String, Long> before = stats();
        assertEquals(0L, before.get("dmaplane_drop_bad_icrc"));
        try (DatagramChannel raw = DatagramChannel.open()) {
            raw.bind(new InetSocketAddress(UdpHcas.loopback(13), 0));
            InetSocketAddress me = (InetSocketAddress) raw.getLocalAddress();
            Gid src = Gid.of(me.getAddress());
            Packet write = new Packet(src, u.a.gid, 0, rc[0].qpNum(), Op.WRITE, true, true, 0x100, 1, true, u.a.buf,
                    u.a.mr.rkey(), 4, 0, 0, 0, 0, 0, 0, 0, Packet.Payload.Bytes.of(new byte[]{9, 9, 9, 9}), false);

            byte[] icrc = encode(write, Service.RC, me).getFirst();
            icrc[icrc.length - 1] ^= 0x40;
            sendRaw(raw, icrc, WireCodec.BTH_AT);
            awaitDrop("bad_icrc", 1);

            Packet nobody = new Packet(src, u.a.gid, 0, 0xABCDE, Op.WRITE, true, true, 0, 1, true, 0, 0, 4, 0, 0, 0,
                    0, 0, 0, 0, Packet.Payload.Bytes.of(new byte[4]), false);
            sendRaw(raw, encode(nobody, Service.RC, me).getFirst(), WireCodec.BTH_AT);
            awaitDrop("bad_qpn", 1);
            Packet rcToUd = new Packet(src, u.a.gid, 0, ud.qpNum(), Op.SEND, true, true, 0, 1, true, 0, 0, 4, 0, 0,
                    0, 0, 0, 0, 0, Packet.Payload.Bytes.of(new byte[4]), false);
            sendRaw(raw, encode(rcToUd, Service.RC, me).getFirst(), WireCodec.BTH_AT);
            awaitDrop("bad_qpn", 2);

            byte[] pkey = encode(write, Service.RC, me).getFirst();
            WireCodec.put16(pkey, WireCodec.BTH_AT + 2, 0x8001); // another partition
            reseal(pkey);
            sendRaw(raw, pkey, WireCodec.BTH_AT);
            awaitDrop("bad_pkey", 1);

            Packet wrongQkey = new Packet(src, u.a.gid, 0x55, ud.qpNum(), Op.UD_SEND, true, true, 0, 1, false, 0, 0,
                    0, 0, 0, 0, 0, 0, 0, 0x22222222, Packet.Payload.Bytes.of(new byte[16]), false);
            sendRaw(raw, encode(wrongQkey, Service.UD, me).getFirst(), WireCodec.BTH_AT);
            awaitDrop("bad_qkey", 1);

            Random rnd = new Random(14);
            byte[] junk = new byte[200];
            rnd.nextBytes(junk);
            junk[0] = 0x15; // a reserved opcode
            sendRaw(raw, junk, 0);
            byte[] truncated = Arrays.copyOf(encode(write, Service.RC, me).getFirst(), WireCodec.BTH_AT + 7);
            sendRaw(raw, truncated, WireCodec.BTH_AT);
            byte[] noPayloadAllowed = encode(new Packet(src, u.a.gid, 0, rc[0].qpNum(), Op.ACK, true, true, 0, 1,
                    false, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, Packet.Payload.Bytes.of(new byte[8]), false), Service.RC,
                    me).getFirst(); // an ACK with a payload
            sendRaw(raw, noPayloadAllowed, WireCodec.BTH_AT);
            awaitDrop("malformed", 3);
        }
        assertEquals(1L, stats().get("dmaplane_drop_bad_icrc"));
        assertNull(u.engineA().crash(), "no exception reached the HCA");
        assertArrayEquals(new byte[4], Arrays.copyOf(u.a.read(0, 4), 4), "the refused writes wrote nothing");

        byte[] data = Hcas.random(10_000, 15);
        u.a.write(0, data);
        rc[0].postSend(new SendWr.RdmaWrite(1, List.of(u.a.sge(0, data.length)), SIGNALED, u.b.buf, u.b.mr.rkey()));
        assertTrue(Hcas.one(u.a.cq).isSuccess());
        assertArrayEquals(data, u.b.read(0, data.length), "the HCA still works");
    }

    /**
     * The ICRC covers the source address and port of each datagram (IBTA annex A17.3.3 and {@code rxe_icrc.c} mask
     * only TOS, TTL and the two checksums), also where the receiver keeps the IP and UDP headers it puts back in front
     * of a datagram for the next one of the same length: datagrams of one length from two ports of one address and
     * from a second address are each accepted, and one whose ICRC was computed for another port than the one it came
     * from is refused as a bad ICRC.
     */
    @Test
    void eachDatagramIsCheckedWithItsOwnSourceAddressAndPort() throws IOException {
        QueuePair[] rc = u.pair();
        try (DatagramChannel one = DatagramChannel.open(); DatagramChannel two = DatagramChannel.open();
             DatagramChannel other = DatagramChannel.open()) {
            one.bind(new InetSocketAddress(UdpHcas.loopback(13), 0));
            two.bind(new InetSocketAddress(UdpHcas.loopback(13), 0));
            other.bind(new InetSocketAddress(UdpHcas.loopback(14), 0));
            InetSocketAddress at1 = (InetSocketAddress) one.getLocalAddress();
            InetSocketAddress at2 = (InetSocketAddress) two.getLocalAddress();
            InetSocketAddress at3 = (InetSocketAddress) other.getLocalAddress();
            byte[] data = Hcas.random(24, 16);
            sendRaw(one, encode(write(at1, rc[0], 0x100, data, 0), Service.RC, at1).getFirst(), WireCodec.BTH_AT);
            awaitLanded(data, 8);
            sendRaw(two, encode(write(at2, rc[0], 0x101, data, 8), Service.RC, at2).getFirst(), WireCodec.BTH_AT);
            awaitLanded(data, 16);
            byte[] forOne = encode(write(at2, rc[0], 0x102, new byte[24], 16), Service.RC, at1).getFirst();
            sendRaw(two, forOne, WireCodec.BTH_AT);
            awaitDrop("bad_icrc", 1);
            sendRaw(other, encode(write(at3, rc[0], 0x102, data, 16), Service.RC, at3).getFirst(), WireCodec.BTH_AT);
            awaitLanded(data, 24);
        }
        assertEquals(1L, stats().get("dmaplane_drop_bad_icrc"));
        assertEquals(0L, stats().get("dmaplane_drop_malformed"));
    }

    /** Waits until rxe0 of a holds {@code data[0, n)} (each write is sent once the one before landed, in PSN order). */
    private void awaitLanded(byte[] data, int n) {
        eventually(() -> Arrays.equals(Arrays.copyOf(data, n), Arrays.copyOf(u.a.read(0, n), n)), WAIT,
                "the good writes of the first " + n + " bytes land: " + stats());
    }

    /** An RDMA WRITE ONLY of {@code data[off, off + 8)} to rxe0 of a at the same offset, as sent from {@code from}. */
    private Packet write(InetSocketAddress from, QueuePair to, int psn, byte[] data, int off) {
        return new Packet(Gid.of(from.getAddress()), u.a.gid, 0, to.qpNum(), Op.WRITE, true, true, psn, 1, true,
                u.a.buf + off, u.a.mr.rkey(), 8, 0, 0, 0, 0, 0, 0, 0,
                Packet.Payload.Bytes.of(Arrays.copyOfRange(data, off, off + 8)), false);
    }
}
