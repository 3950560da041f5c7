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
 * (a 16-byte key, the M, C and R flags, revision 1, private data of up to 512 bytes; {@code siw_cm.c}
 * {@code siw_send_mpareqrep}, {@code siw_recv_mpa_rr}) and the FPDU of full operation: the ULPDU length (2 bytes),
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
    static final int REVISION = 1;
    static final int RR_HDR = 20;
    static final int MAX_PRIVATE_DATA = 512;
    /** The CRC and the length field an FPDU adds to its ULPDU. */
    static final int FPDU_OVERHEAD = 2 + 4;

    /** A received MPA request or reply. */
    record Frame(boolean reply, int flags, int revision, byte[] privateData) {
        boolean rejected() {
            return (flags & FLAG_REJECT) != 0;
        }
    }

    /** An MPA request ({@code reply} false) or reply, with the CRC flag and the reject bit as asked. */
    static byte[] frame(boolean reply, boolean reject, byte[] privateData) {
        ByteBuffer b = ByteBuffer.allocate(RR_HDR + privateData.length);
        b.put(reply ? REP_KEY : REQ_KEY);
        b.put((byte) (FLAG_CRC | (reject ? FLAG_REJECT : 0)));
        b.put((byte) REVISION);
        b.putShort((short) privateData.length);
        b.put(privateData);
        return b.array();
    }

    /**
     * Reads an MPA request or reply ({@code siw_recv_mpa_rr}).
     *
     * @throws ErrnoException {@code EPROTO} for a wrong key, revision or private data length
     * @throws IOException    when the stream fails or ends
     */
    static Frame read(ReadableByteChannel ch, boolean reply) throws IOException {
        ByteBuffer h = ByteBuffer.allocate(RR_HDR);
        readFully(ch, h);
        byte[] key = Arrays.copyOf(h.array(), 16);
        if (!Arrays.equals(key, reply ? REP_KEY : REQ_KEY)) {
            throw new ErrnoException(Errno.EPROTO, "siw: MPA key '" + new String(key, StandardCharsets.US_ASCII)
                    + "' is not '" + new String(reply ? REP_KEY : REQ_KEY, StandardCharsets.US_ASCII) + "'");
        }
        int flags = h.get(16) & 0xff;
        int rev = h.get(17) & 0xff;
        int pdLen = h.getShort(18) & 0xffff;
        if (rev != REVISION) {
            throw new ErrnoException(Errno.EPROTO, "siw: MPA revision " + rev + ", not " + REVISION);
        }
        if (pdLen > MAX_PRIVATE_DATA) {
            throw new ErrnoException(Errno.EPROTO, "siw: MPA private data length " + pdLen + " exceeds "
                    + MAX_PRIVATE_DATA);
        }
        ByteBuffer pd = ByteBuffer.allocate(pdLen);
        readFully(ch, pd);
        return new Frame(reply, flags, rev, pd.array());
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
     * Completes the FPDU whose ULPDU was written at {@code f[at + 2, at + 2 + ulpdu)}: the length field in front,
     * zero pad and CRC32C behind.
     *
     * @return the FPDU's length
     */
    static int seal(byte[] f, int at, int ulpdu) {
        f[at] = (byte) (ulpdu >>> 8);
        f[at + 1] = (byte) ulpdu;
        int end = at + 2 + ulpdu;
        for (int i = 0, n = pad(ulpdu); i < n; i++) {
            f[end++] = 0;
        }
        CRC32C crc = new CRC32C();
        crc.update(f, at, end - at);
        int c = (int) crc.getValue();
        f[end] = (byte) c;
        f[end + 1] = (byte) (c >>> 8);
        f[end + 2] = (byte) (c >>> 16);
        f[end + 3] = (byte) (c >>> 24);
        return end + 4 - at;
    }

    /** Whether the CRC at the end of the FPDU {@code f[at, at + len)} is the CRC32C of what precedes it. */
    static boolean crcOk(byte[] f, int at, int len) {
        CRC32C crc = new CRC32C();
        crc.update(f, at, len - 4);
        int c = (int) crc.getValue();
        int e = at + len;
        int sent = (f[e - 4] & 0xff) | (f[e - 3] & 0xff) << 8 | (f[e - 2] & 0xff) << 16 | (f[e - 1] & 0xff) << 24;
        return c == sent;
    }

    static void readFully(ReadableByteChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            if (ch.read(b) < 0) {
                throw new EOFException("siw: the peer closed the stream");
            }
        }
    }
}
