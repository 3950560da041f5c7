package dev.dmaplane.driver.softroce;

import dev.dmaplane.driver.softroce.Opcode.Service;
import dev.dmaplane.driver.softroce.Packet.Op;
import dev.dmaplane.driver.softroce.WireCodec.Accepted;
import dev.dmaplane.driver.softroce.WireCodec.Drop;
import dev.dmaplane.driver.softroce.WireCodec.Refused;
import dev.dmaplane.rdma.verbs.Gid;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.zip.CRC32;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The wire codec against {@code rxe_hdr.h} / {@code rxe_opcode.c} (the headers each opcode carries, in IBTA 9.2
 * order) and {@code rxe_icrc.c} with IBTA annex A17.3.3 (the ICRC: CRC-32 over 8 bytes of ones for the LRH, the
 * IPv4 and UDP headers with TOS, TTL, IP checksum and UDP checksum masked to ones, the BTH with resv8a masked,
 * and the rest; stored little-endian). Every opcode round-trips; the ICRC and the whole datagram of one packet are
 * checked against bytes this test lays out itself.
 */
class WireCodecTest {
    static final Gid A = Gid.parse("::ffff:127.0.0.11");
    static final Gid B = Gid.parse("::ffff:127.0.0.12");

    private static List<byte[]> encode(Packet p, Service s) {
        List<byte[]> out = new ArrayList<>();
        WireCodec.encode(p, s, 0xC001, (b, n) -> out.add(Arrays.copyOf(b, n)));
        return out;
    }

    private static Accepted decode(byte[] d) {
        return assertInstanceOf(Accepted.class, WireCodec.decode(d, d.length));
    }

    private static byte[] bytes(int n, int seed) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (i * 31 + seed);
        }
        return b;
    }

    /** A packet of {@code opcode} with every field its headers carry set to something recognisable. */
    static Packet sample(Opcode opcode) {
        int plen = opcode.payload ? 13 : 0;
        Packet.Payload pl = plen == 0 ? Packet.Payload.NONE : Packet.Payload.Bytes.of(bytes(plen, opcode.code));
        boolean ud = opcode.service() == Service.UD;
        boolean send = opcode.op == Op.SEND || opcode.op == Op.SEND_IMM || opcode.op == Op.SEND_INV;
        return new Packet(A, B, ud ? 0x000123 : 0, 0xABCDEF, opcode.op, opcode.first, opcode.last, 0xFFFFFE, 1,
                opcode.last, opcode.has(Opcode.RETH) || opcode.has(Opcode.ATMETH) ? 0x1122334455667788L : 0,
                opcode.has(Opcode.RETH) || opcode.has(Opcode.ATMETH) ? 0xCAFE0042 : 0,
                opcode.has(Opcode.RETH) ? 0x80000000L : opcode.has(Opcode.ATMETH) ? 8 : send && opcode.first
                        && opcode.last ? plen : 0,
                opcode.has(Opcode.IMM) || opcode.has(Opcode.IETH) ? 0xDEADBEEF : 0,
                opcode.has(Opcode.ATMETH) ? -2 : 0, opcode.op == Op.CMP_SWAP ? 0x0102030405060708L : 0,
                opcode.has(Opcode.AETH) ? 0x61 : 0, opcode.has(Opcode.AETH) ? 0x654321 : 0,
                opcode.has(Opcode.ATMACK) ? 0x7766554433221100L : 0, ud ? 0x80010002 : 0, pl,
                opcode.last && opcode.payload);
    }

    @ParameterizedTest
    @EnumSource(Opcode.class)
    void everyOpcodeRoundTripsWithTheHeadersItCarries(Opcode opcode) {
        Packet p = sample(opcode);
        List<byte[]> d = encode(p, opcode.service());
        assertEquals(1, d.size());
        byte[] b = d.getFirst();
        assertEquals(opcode.code, b[WireCodec.BTH_AT] & 0xff);
        int plen = (int) p.payload().length();
        assertEquals(WireCodec.IP + WireCodec.UDP + WireCodec.BTH + opcode.extLength() + plen + (-plen & 3)
                + WireCodec.ICRC, b.length);
        Accepted a = decode(b);
        assertEquals(opcode.service(), a.service());
        assertEquals(WireCodec.DEFAULT_PKEY, a.pkey());
        Packet q = a.packet();
        assertEquals(p, new Packet(q.sgid(), q.dgid(), q.srcQpn(), q.destQpn(), q.op(), q.first(), q.last(), q.psn(),
                q.count(), q.ackReq(), q.va(), q.rkey(), q.dmaLen(), q.imm(), q.swapAdd(), q.compare(), q.syndrome(),
                q.msn(), q.orig(), q.qkey(), p.payload(), q.se()), "header fields");
        byte[] got = new byte[(int) q.payload().length()];
        q.payload().copyTo(0, MemorySegment.ofArray(got));
        byte[] want = new byte[plen];
        p.payload().copyTo(0, MemorySegment.ofArray(want));
        assertArrayEquals(want, got);
    }

    @Test
    void aTrainBecomesOneDatagramPerPacketCutAtItsMtuWithFirstMiddleLastOpcodes() {
        byte[] data = bytes(5000, 3); // five packets at MTU 1024
        Packet p = new Packet(A, B, 0, 17, Op.WRITE_IMM, true, true, 0xFFFFFE, 5, true, 0x1000, 0x42, 5000, 0x77,
                0, 0, 0, 0, 0, 0, Packet.Payload.Bytes.of(data), true);
        List<byte[]> d = encode(p, Service.RC);
        assertEquals(List.of(0x06, 0x07, 0x07, 0x07, 0x09),
                d.stream().map(b -> b[WireCodec.BTH_AT] & 0xff).toList(), "WRITE FIRST, MIDDLE x3, LAST_WITH_IMM");
        byte[] back = new byte[5000];
        int at = 0;
        for (int i = 0; i < 5; i++) {
            Packet q = decode(d.get(i)).packet();
            assertEquals(Packet.psnAdd(0xFFFFFE, i), q.psn(), "PSNs wrap at 2^24");
            assertEquals(i == 4, q.ackReq());
            assertEquals(i == 4, q.se());
            assertEquals(i == 4 ? Op.WRITE_IMM : Op.WRITE, q.op());
            int n = (int) q.payload().length();
            q.payload().copyTo(0, MemorySegment.ofArray(back).asSlice(at, n));
            at += n;
        }
        assertEquals(5000, at);
        assertArrayEquals(data, back);
        Packet first = decode(d.getFirst()).packet();
        assertEquals(0x1000, first.va());
        assertEquals(5000, first.dmaLen());
        assertEquals(0x77, decode(d.get(4)).packet().imm());
    }

    @Test
    void aTrainOfWriteMessagesBecomesWriteOnlyPacketsEachWithItsReth() {
        byte[] src = bytes(300, 5);
        Packet.Payload.Messages m = new Packet.Payload.Messages(3, new long[]{0x100, 0x200, 0x150},
                new int[]{100, 100, 100}, new long[]{0, 100, 200}, null, MemorySegment.ofArray(src), 0x100, 0x300, 300);
        Packet p = new Packet(A, B, 0, 9, Op.WRITE, true, true, 50, 3, true, 0x100, 0x99, 100, 0, 0, 0, 0, 0, 0, 0,
                m, false);
        List<byte[]> d = encode(p, Service.RC);
        assertEquals(3, d.size());
        for (int i = 0; i < 3; i++) {
            Packet q = decode(d.get(i)).packet();
            assertEquals(Op.WRITE, q.op());
            assertTrue(q.first() && q.last());
            assertEquals(50 + i, q.psn());
            assertEquals(m.vas()[i], q.va());
            assertEquals(0x99, q.rkey());
            assertEquals(100, q.dmaLen());
            byte[] got = new byte[100];
            q.payload().copyTo(0, MemorySegment.ofArray(got));
            assertArrayEquals(Arrays.copyOfRange(src, i * 100, i * 100 + 100), got);
        }
    }

    /** The datagram of an RC RDMA WRITE ONLY of 5 bytes, laid out here field by field, with its ICRC. */
    @Test
    void theDatagramAndItsIcrcMatchBytesLaidOutByHand() {
        byte[] payload = {1, 2, 3, 4, 5};
        Packet p = new Packet(A, B, 0, 0x000102, Op.WRITE, true, true, 0x030405, 1, true, 0x0000_7F00_1234_5000L,
                0x0A0B0C0D, 5, 0, 0, 0, 0, 0, 0, 0, Packet.Payload.Bytes.of(payload), false);
        byte[] got = encode(p, Service.RC).getFirst();
        HexFormat hex = HexFormat.of();
        byte[] want = hex.parseHex(
                "4500" + "0044" + "0000" + "4000" + "4011" + "0000" + "7f00000b" + "7f00000c" // IPv4, checksum later
                        + "c001" + "12b7" + "0030" + "0000" // UDP: 0xC001 -> 4791, 48 bytes, checksum 0
                        + "0a" + "30" + "ffff" + "00" + "000102" + "80" + "030405" // BTH: WRITE_ONLY, pad 3, A
                        + "00007f0012345000" + "0a0b0c0d" + "00000005" // RETH
                        + "0102030405" + "000000" // payload, pad
                        + "00000000"); // ICRC later
        int sum = 0;
        for (int i = 0; i < 20; i += 2) {
            sum += (want[i] & 0xff) << 8 | (want[i + 1] & 0xff);
        }
        sum = (sum & 0xffff) + (sum >>> 16);
        want[10] = (byte) (~sum >>> 8);
        want[11] = (byte) ~sum;
        byte[] masked = want.clone();
        masked[1] = (byte) 0xff; // TOS
        masked[8] = (byte) 0xff; // TTL
        masked[10] = (byte) 0xff; // IP checksum
        masked[11] = (byte) 0xff;
        masked[26] = (byte) 0xff; // UDP checksum
        masked[27] = (byte) 0xff;
        masked[32] = (byte) 0xff; // BTH resv8a
        CRC32 crc = new CRC32();
        crc.update(new byte[]{-1, -1, -1, -1, -1, -1, -1, -1});
        crc.update(masked, 0, masked.length - 4);
        long icrc = crc.getValue();
        for (int i = 0; i < 4; i++) {
            want[want.length - 4 + i] = (byte) (icrc >>> (8 * i)); // little-endian, as rxe stores it
        }
        assertEquals(hex.formatHex(want), hex.formatHex(got));
    }

    @Test
    void theIcrcIgnoresTheMaskedFieldsAndCatchesAnyOtherChange() {
        byte[] d = encode(sample(Opcode.RC_SEND_ONLY), Service.RC).getFirst();
        for (int at : new int[]{1, 8, 10, 11, 26, 27, WireCodec.BTH_AT + 4}) {
            byte[] x = d.clone();
            x[at] ^= 0x5a;
            assertEquals(WireCodec.icrc(d, d.length - 4), WireCodec.icrc(x, x.length - 4), "masked byte " + at);
        }
        for (int at = 0; at < d.length - 4; at++) {
            if (List.of(1, 8, 10, 11, 26, 27, WireCodec.BTH_AT + 4).contains(at)) {
                continue;
            }
            byte[] x = d.clone();
            x[at] ^= 0x01;
            assertFalse(WireCodec.icrc(d, d.length - 4) == WireCodec.icrc(x, x.length - 4), "byte " + at);
        }
        byte[] bad = d.clone();
        bad[bad.length - 1] ^= 1;
        assertEquals(Drop.BAD_ICRC, assertInstanceOf(Refused.class, WireCodec.decode(bad, bad.length)).drop());
    }

    @Test
    void malformedDatagramsAreRefusedWithTheReason() {
        byte[] d = encode(sample(Opcode.RC_ACKNOWLEDGE), Service.RC).getFirst();
        assertEquals(Drop.MALFORMED, ((Refused) WireCodec.decode(d, 30)).drop(), "truncated");
        byte[] op = d.clone();
        op[WireCodec.BTH_AT] = 0x15; // reserved RC opcode
        assertEquals(Drop.MALFORMED, ((Refused) WireCodec.decode(op, op.length)).drop());
        byte[] tver = d.clone();
        tver[WireCodec.BTH_AT + 1] |= 1;
        assertEquals(Drop.MALFORMED, ((Refused) WireCodec.decode(tver, tver.length)).drop());
        byte[] extra = Arrays.copyOf(d, d.length + 4); // an ACK has no payload
        WireCodec.put16(extra, 2, extra.length);
        WireCodec.put16(extra, WireCodec.IP + 4, extra.length - WireCodec.IP);
        assertEquals(Drop.MALFORMED, ((Refused) WireCodec.decode(extra, extra.length)).drop());
    }
}
