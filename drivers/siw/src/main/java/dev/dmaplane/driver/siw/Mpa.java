package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ReadableByteChannel;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.zip.CRC32C;

/**
 * MPA (RFC 5044) as siw speaks it, markers off and CRC on: the request and reply frames of the start-up phase
 * (a 16-byte key, the M, C, R and H flags, revision 1 or 2, private data of up to 512 bytes; {@code siw_cm.c}
 * {@code siw_send_mpareqrep}, {@code siw_recv_mpa_rr}), with MPA v2's enhanced connection establishment (RFC 6581:
 * the H flag and, in front of the private data, the IRD and ORD words with the peer-to-peer and RTR bits of
 * {@code struct mpa_v2_data}), and the FPDU of full operation: the ULPDU length (2 bytes),
 * the ULPDU (DDP segment), a pad to a multiple of 4 and the CRC32C of all that ({@code siw_qp_tx.c},
 * {@code siw_qp_rx.c}), sent as the kernel's {@code crc32c} shash leaves it, little-endian.
 */
final class Mpa {
    private Mpa() {
    }

    static final byte[] REQ_KEY = "MPA ID Req Frame".getBytes(StandardCharsets.US_ASCII);
    static final byte[] REP_KEY = "MPA ID Rep Frame".getBytes(StandardCharsets.US_ASCII);
    static final int FLAG_MARKERS = 0x80;
    static final int FLAG_CRC = 0x40;
    static final int FLAG_REJECT = 0x20;
    /** {@code MPA_RR_FLAG_ENHANCED}: the H bit of RFC 6581, IRD and ORD lead the private data. */
    static final int FLAG_ENHANCED = 0x10;
    static final int REVISION_1 = 1;
    static final int REVISION_2 = 2;
    /** {@code MPA_V2_PEER_TO_PEER}, in the IRD word. */
    static final int V2_PEER_TO_PEER = 0x8000;
    /** {@code MPA_V2_RDMA_WRITE_RTR}, in the ORD word: a zero-length RDMA WRITE is the RTR message. */
    static final int V2_WRITE_RTR = 0x8000;
    /** {@code MPA_V2_RDMA_READ_RTR}, in the ORD word: a zero-length RDMA READ is the RTR message. */
    static final int V2_READ_RTR = 0x4000;
    /** {@code MPA_IRD_ORD_MASK}. */
    static final int V2_IRD_ORD_MASK = 0x3fff;
    /** Bytes of {@code struct mpa_v2_data}. */
    static final int V2_DATA = 4;
    static final int RR_HDR = 20;
    static final int MAX_PRIVATE_DATA = 512;
    /** The CRC and the length field an FPDU adds to its ULPDU. */
    static final int FPDU_OVERHEAD = 2 + 4;

    /**
     * The IRD and ORD words of MPA v2 ({@code struct mpa_v2_data}, RFC 6581 section 7.1): the depths (14 bits each),
     * the peer-to-peer bit and the RTR messages offered (request) or chosen (reply).
     *
     * @param ird        RDMA READs the sender serves at once
     * @param ord        RDMA READs the sender may have outstanding
     * @param peerToPeer whether the sender wants an RTR message before full operation
     * @param rtr        {@link #V2_WRITE_RTR} and/or {@link #V2_READ_RTR}, or 0
     */
    record V2(int ird, int ord, boolean peerToPeer, int rtr) {
        static V2 of(int irdWord, int ordWord) {
            return new V2(irdWord & V2_IRD_ORD_MASK, ordWord & V2_IRD_ORD_MASK, (irdWord & V2_PEER_TO_PEER) != 0,
                    ordWord & (V2_WRITE_RTR | V2_READ_RTR));
        }

        int irdWord() {
            return (peerToPeer ? V2_PEER_TO_PEER : 0) | Math.min(ird, V2_IRD_ORD_MASK);
        }

        int ordWord() {
            return rtr | Math.min(ord, V2_IRD_ORD_MASK);
        }

        /**
         * The words {@code siw_proc_mpareq} prepares from this request for its answer, accept or reject
         * ({@code cep->mpa.v2_ctrl}), with the responder's {@code ird} and {@code ord}: the peer-to-peer bit echoed
         * and with it the RTR message picked, a zero-length WRITE unless the request offers only a READ.
         */
        V2 answer(int ird, int ord) {
            int pick = !peerToPeer ? 0 : (rtr & V2_WRITE_RTR) == 0 && (rtr & V2_READ_RTR) != 0 ? V2_READ_RTR
                    : V2_WRITE_RTR;
            return new V2(ird, ord, peerToPeer, pick);
        }
    }

    /**
     * A received MPA request or reply.
     *
     * @param reply whether a reply was expected (the key it should carry)
     * @param key   the 16 key bytes as received
     * @param data  the private data field as received (with MPA v2's IRD/ORD words in front when enhanced)
     */
    record Frame(boolean reply, byte[] key, int flags, int revision, byte[] data) {
        /** Whether the key is the one expected ({@link #REP_KEY} for a reply, else {@link #REQ_KEY}). */
        boolean keyMatches() {
            return Arrays.equals(key, reply ? REP_KEY : REQ_KEY);
        }

        /**
         * Refuses a wrong key as {@code siw_proc_mpareq} does.
         *
         * @throws ErrnoException {@code EPROTO} naming the key received
         */
        void checkKey() {
            if (!keyMatches()) {
                throw new ErrnoException(Errno.EPROTO, "siw: MPA key '" + new String(key, StandardCharsets.US_ASCII)
                        + "' is not '" + new String(reply ? REP_KEY : REQ_KEY, StandardCharsets.US_ASCII) + "'");
            }
        }

        boolean rejected() {
            return (flags & FLAG_REJECT) != 0;
        }

        /** Whether the frame carries MPA v2's IRD and ORD (revision 2 and the H flag). */
        boolean enhanced() {
            return revision == REVISION_2 && (flags & FLAG_ENHANCED) != 0;
        }

        /** The IRD/ORD words of an {@linkplain #enhanced() enhanced} frame. */
        V2 v2() {
            ByteBuffer b = ByteBuffer.wrap(data);
            return V2.of(b.getShort(0) & 0xffff, b.getShort(2) & 0xffff);
        }

        /** The consumer's private data: what follows the IRD/ORD words of an enhanced frame (none if it is shorter). */
        byte[] privateData() {
            return enhanced() ? Arrays.copyOfRange(data, Math.min(V2_DATA, data.length), data.length) : data.clone();
        }

        /** Bytes the frame took on the stream. */
        int length() {
            return RR_HDR + data.length;
        }
    }

    /**
     * An MPA request ({@code reply} false) or reply of {@code revision}, with the CRC flag and the reject bit as
     * asked; with {@code v2} (revision 2 only) the H flag is set and the IRD/ORD words lead the private data.
     */
    static byte[] frame(boolean reply, boolean reject, int revision, V2 v2, byte[] privateData) {
        int extra = v2 == null ? 0 : V2_DATA;
        ByteBuffer b = ByteBuffer.allocate(RR_HDR + extra + privateData.length);
        b.put(reply ? REP_KEY : REQ_KEY);
        b.put((byte) (FLAG_CRC | (reject ? FLAG_REJECT : 0) | (v2 == null ? 0 : FLAG_ENHANCED)));
        b.put((byte) revision);
        b.putShort((short) (extra + privateData.length));
        if (v2 != null) {
            b.putShort((short) v2.irdWord());
            b.putShort((short) v2.ordWord());
        }
        b.put(privateData);
        return b.array();
    }

    /**
     * What {@code siw_proc_mpareq} refuses in a request whose key was right: a revision other than 1 up to
     * {@code maxRevision}, markers (siw sends none and takes none), an enhanced frame whose private data cannot hold
     * the IRD/ORD words. The reply's refusals are {@code Cep}'s, in {@code siw_proc_mpareply}'s order.
     *
     * @throws ErrnoException {@code EPROTO} naming the bad field
     */
    static void check(Frame f, int maxRevision) {
        if (f.revision() < REVISION_1 || f.revision() > maxRevision) {
            throw new ErrnoException(Errno.EPROTO, "siw: MPA revision " + f.revision() + " outside "
                    + REVISION_1 + ".." + maxRevision);
        }
        if ((f.flags() & FLAG_MARKERS) != 0) {
            throw new ErrnoException(Errno.EPROTO, "siw: MPA markers asked for (flags 0x"
                    + Integer.toHexString(f.flags()) + "): siw supports none");
        }
        if (f.enhanced() && f.data().length < V2_DATA) {
            throw new ErrnoException(Errno.EPROTO, "siw: MPA v2 private data length " + f.data().length
                    + " cannot hold IRD and ORD (" + V2_DATA + " bytes)");
        }
    }

    /**
     * Reads an MPA request or reply ({@code siw_recv_mpa_rr}); {@link Frame#checkKey} and {@link #check} judge its
     * header, as {@code siw_proc_mpareq} and {@code siw_proc_mpareply} do after the read.
     *
     * @throws ErrnoException {@code EPROTO} for a private data length over the limit
     * @throws IOException    when the stream fails or ends
     */
    static Frame read(ReadableByteChannel ch, boolean reply) throws IOException {
        ByteBuffer h = ByteBuffer.allocate(RR_HDR);
        readFully(ch, h);
        byte[] key = Arrays.copyOf(h.array(), 16);
        int flags = h.get(16) & 0xff;
        int rev = h.get(17) & 0xff;
        int pdLen = h.getShort(18) & 0xffff;
        if (pdLen > MAX_PRIVATE_DATA) {
            throw new ErrnoException(Errno.EPROTO, "siw: MPA private data length " + pdLen + " exceeds "
                    + MAX_PRIVATE_DATA);
        }
        ByteBuffer pd = ByteBuffer.allocate(pdLen);
        readFully(ch, pd);
        return new Frame(reply, key, flags, rev, pd.array());
    }

    /** Pad bytes after a ULPDU of {@code ulpdu} bytes so that length field, ULPDU and pad fill whole words. */
    static int pad(int ulpdu) {
        return (4 - ((ulpdu + 2) & 3)) & 3;
    }

    /** Bytes of the FPDU around a ULPDU of {@code ulpdu} bytes. */
    static int fpduLength(int ulpdu) {
        return 2 + ulpdu + pad(ulpdu) + 4;
    }

    /**
     * Completes the FPDU whose ULPDU was written at {@code [at + 2, at + 2 + ulpdu)} of {@code f} (a heap or direct
     * buffer, its position and limit untouched): the length field in front, zero pad and CRC32C behind.
     *
     * @return the FPDU's length
     */
    static int seal(ByteBuffer f, int at, int ulpdu) {
        f.putShort(at, (short) ulpdu);
        int end = at + 2 + ulpdu;
        for (int i = 0, n = pad(ulpdu); i < n; i++) {
            f.put(end++, (byte) 0);
        }
        f.putInt(end, Integer.reverseBytes(crc32c(f, at, end - at)));
        return end + 4 - at;
    }

    /** Whether the CRC at the end of the FPDU {@code [at, at + len)} of {@code f} is the CRC32C of what precedes it. */
    static boolean crcOk(ByteBuffer f, int at, int len) {
        return crc32c(f, at, len - 4) == Integer.reverseBytes(f.getInt(at + len - 4));
    }

    private static int crc32c(ByteBuffer f, int at, int len) {
        CRC32C crc = new CRC32C();
        crc.update(f.slice(at, len));
        return (int) crc.getValue();
    }

    static void readFully(ReadableByteChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            if (ch.read(b) < 0) {
                throw new EOFException("siw: the peer closed the stream");
            }
        }
    }
}
