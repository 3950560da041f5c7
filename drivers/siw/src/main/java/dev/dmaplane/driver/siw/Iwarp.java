package dev.dmaplane.driver.siw;

import java.nio.ByteBuffer;

/**
 * The DDP and RDMAP headers on the wire ({@code iwarp.h}; RFC 5041 section 4, RFC 5040 section 4): a DDP control
 * byte (tagged, last, version 1), an RDMAP control byte (version 1, opcode), then for a tagged segment the STag and
 * tagged offset (14 bytes), for an untagged one the Invalidate STag, queue number, message sequence number and
 * message offset (18 bytes). A Read Request adds the sink and source buffers (28 bytes), a Terminate its control
 * word (4 bytes).
 */
final class Iwarp {
    private Iwarp() {
    }

    /** DDP version 1, RDMAP version 1. */
    static final int DDP_TAGGED = 0x80;
    static final int DDP_LAST = 0x40;
    static final int DDP_VERSION = 0x01;
    static final int RDMAP_VERSION = 0x40;

    /** RDMAP opcodes (RFC 5040, section 4.3). */
    static final int OP_WRITE = 0x0;
    static final int OP_READ_REQUEST = 0x1;
    static final int OP_READ_RESPONSE = 0x2;
    static final int OP_SEND = 0x3;
    static final int OP_SEND_INV = 0x4;
    static final int OP_SEND_SE = 0x5;
    static final int OP_SEND_SE_INV = 0x6;
    static final int OP_TERMINATE = 0x7;

    /** Untagged queues (RFC 5040, section 5.1): sends, read requests, terminates. */
    static final int QN_SEND = 0;
    static final int QN_READ_REQUEST = 1;
    static final int QN_TERMINATE = 2;

    static final int TAGGED_HDR = 14;
    static final int UNTAGGED_HDR = 18;
    static final int READ_REQUEST_BODY = 28;
    static final int TERMINATE_BODY = 4;

    /**
     * Whether {@code opcode} is a tagged message (RDMA WRITE, Read Response): siw lays out and places a segment by
     * its opcode alone ({@code set_rx_fpdu_context}, {@code iwarp_pktinfo}), whatever its DDP tagged flag says.
     */
    static boolean taggedOpcode(int opcode) {
        return opcode == OP_WRITE || opcode == OP_READ_RESPONSE;
    }

    /** The ULPDU bytes of the headers of {@code opcode}: {@code iwarp_pktinfo[opcode].hdr_len} less the MPA length. */
    static int headerLength(int opcode) {
        return switch (opcode) {
            case OP_WRITE, OP_READ_RESPONSE -> TAGGED_HDR;
            case OP_READ_REQUEST -> UNTAGGED_HDR + READ_REQUEST_BODY;
            case OP_TERMINATE -> UNTAGGED_HDR + TERMINATE_BODY;
            default -> UNTAGGED_HDR;
        };
    }

    /**
     * A DDP segment as received: its headers and where its payload lies in the ULPDU; {@code tagged} is the layout
     * its opcode gives ({@link #taggedOpcode}).
     */
    record Segment(boolean tagged, boolean last, int ddpVersion, int rdmapVersion, int opcode, int stag, long to,
                   int invStag, int qn, int msn, int mo, int payloadAt, int payloadLength) {
    }

    /** Writes a tagged header for {@code opcode} at the buffer's position. */
    static void tagged(ByteBuffer b, int opcode, boolean last, int stag, long to) {
        b.put((byte) (DDP_TAGGED | (last ? DDP_LAST : 0) | DDP_VERSION));
        b.put((byte) (RDMAP_VERSION | opcode));
        b.putInt(stag);
        b.putLong(to);
    }

    /** Writes an untagged header for {@code opcode} at the buffer's position. */
    static void untagged(ByteBuffer b, int opcode, boolean last, int invStag, int qn, int msn, int mo) {
        b.put((byte) ((last ? DDP_LAST : 0) | DDP_VERSION));
        b.put((byte) (RDMAP_VERSION | opcode));
        b.putInt(invStag);
        b.putInt(qn);
        b.putInt(msn);
        b.putInt(mo);
    }

    /** Writes a Read Request's body (RFC 5040, section 4.4). */
    static void readRequest(ByteBuffer b, int sinkStag, long sinkTo, int size, int srcStag, long srcTo) {
        b.putInt(sinkStag);
        b.putLong(sinkTo);
        b.putInt(size);
        b.putInt(srcStag);
        b.putLong(srcTo);
    }

    /**
     * The payload bytes of {@code s}'s message that the FPDUs in {@code [from, to)} of {@code b} continue: those of
     * the complete FPDUs from {@code from} on that carry its next bytes (the same opcode; tagged: the same STag at the
     * next tagged offset; untagged: the same queue and MSN at the next message offset), up to its last segment or the
     * first FPDU
     * that does not. Only the headers are read; each FPDU's CRC is checked when it is processed.
     */
    static long following(ByteBuffer b, int from, int to, Segment s) {
        if (s.last()) {
            return 0;
        }
        int hdr = s.tagged() ? TAGGED_HDR : UNTAGGED_HDR;
        long n = 0;
        long next = (s.tagged() ? s.to() : Integer.toUnsignedLong(s.mo())) + s.payloadLength();
        int at = from;
        while (to - at >= 2) {
            int ulpdu = b.getShort(at) & 0xffff;
            int total = Mpa.fpduLength(ulpdu);
            if (total > to - at || ulpdu < hdr) {
                break;
            }
            int ddp = b.get(at + 2) & 0xff;
            int op = b.get(at + 3) & 0x0f;
            boolean same = op == s.opcode() && (s.tagged()
                    ? b.getInt(at + 4) == s.stag() && b.getLong(at + 8) == next
                    : b.getInt(at + 8) == s.qn() && b.getInt(at + 12) == s.msn()
                    && Integer.toUnsignedLong(b.getInt(at + 16)) == next);
            if (!same) {
                break;
            }
            n += ulpdu - hdr;
            next += ulpdu - hdr;
            if ((ddp & DDP_LAST) != 0) {
                break;
            }
            at += total;
        }
        return n;
    }

    /**
     * Parses the DDP and RDMAP headers of the ULPDU {@code [at, at + len)} of {@code u}; the segment's payload
     * offset counts from the start of {@code u}.
     *
     * @return the segment, or null when the ULPDU is too short for the headers it announces
     */
    static Segment parse(ByteBuffer u, int at, int len) {
        if (len < TAGGED_HDR) {
            return null;
        }
        ByteBuffer b = u.slice(at, len);
        int ddp = b.get() & 0xff;
        int rdmap = b.get() & 0xff;
        boolean last = (ddp & DDP_LAST) != 0;
        int opcode = rdmap & 0x0f;
        boolean tagged = taggedOpcode(opcode);
        if (tagged) {
            int stag = b.getInt();
            long to = b.getLong();
            return new Segment(true, last, ddp & 0x03, rdmap >>> 6, opcode, stag, to, 0, 0, 0, 0, at + TAGGED_HDR,
                    len - TAGGED_HDR);
        }
        if (len < UNTAGGED_HDR) {
            return null;
        }
        int inv = b.getInt();
        int qn = b.getInt();
        int msn = b.getInt();
        int mo = b.getInt();
        return new Segment(false, last, ddp & 0x03, rdmap >>> 6, opcode, 0, 0, inv, qn, msn, mo, at + UNTAGGED_HDR,
                len - UNTAGGED_HDR);
    }

    /** {@code siw_qp_mpa_rts}: the RTR message, a zero-length RDMA WRITE to STag 1 ({@code MPA_V2_RDMA_WRITE_RTR}). */
    static byte[] rtrWrite() {
        byte[] f = new byte[Mpa.fpduLength(TAGGED_HDR)];
        tagged(ByteBuffer.wrap(f, 2, TAGGED_HDR), OP_WRITE, true, 1, 0);
        Mpa.seal(ByteBuffer.wrap(f), 0, TAGGED_HDR);
        return f;
    }
}
