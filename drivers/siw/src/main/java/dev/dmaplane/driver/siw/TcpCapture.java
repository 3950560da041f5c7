package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;

/**
 * A capture file as {@code tcpdump -w} writes it (libpcap, {@code LINKTYPE_ETHERNET}, microsecond stamps) of what
 * siw's connections carry: each MPA frame and FPDU as one TCP segment of its own (the framing Wireshark's MPA
 * dissector expects), in Ethernet II (locally administered MACs made of the IPv4 addresses, {@code 02:00:a.b.c.d})
 * and IPv4 with its header checksum, TCP with sequence and acknowledgement numbers that follow the bytes each side
 * sent and received from an initial sequence number derived from the connection's addresses, and the TCP
 * checksum; the active side adds the three-way handshake and each side its FIN. Writes are serialised; a failed
 * write stops the capture (logged with its stack), never the sender.
 */
final class TcpCapture implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(TcpCapture.class);
    static final int SYN = 0x02;
    static final int ACK = 0x10;
    static final int PSH = 0x08;
    static final int FIN = 0x01;
    private static final int HEADERS = 14 + 20 + 20;
    /** Frames up to an IPv4 packet of 65535 bytes in Ethernet, whole. */
    private static final int SNAPLEN = 14 + 65535;

    private final Path file;
    private final OutputStream out;
    private boolean failed;
    private boolean closed;

    private TcpCapture(Path file, OutputStream out) {
        this.file = file;
        this.out = out;
    }

    /**
     * Creates (or truncates) {@code file} with the capture's global header.
     *
     * @throws ErrnoException {@code EIO} naming the file when it cannot be written
     */
    static TcpCapture open(Path file) {
        try {
            OutputStream out = new BufferedOutputStream(Files.newOutputStream(file), 1 << 16);
            ByteBuffer h = ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN);
            h.putInt(0xa1b2c3d4).putShort((short) 2).putShort((short) 4).putInt(0).putInt(0).putInt(SNAPLEN).putInt(1);
            out.write(h.array());
            return new TcpCapture(file, out);
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, "siw: cannot write the capture " + file + ": " + e.getMessage(), e);
        }
    }

    Path file() {
        return file;
    }

    /** The initial sequence number of the direction {@code src} to {@code dst}. */
    static long isn(InetSocketAddress src, InetSocketAddress dst) {
        long h = 0x9E37_79B9_7F4A_7C15L;
        for (byte b : src.getAddress().getAddress()) {
            h = (h ^ (b & 0xff)) * 0x100_0000_01B3L;
        }
        h = (h ^ src.getPort()) * 0x100_0000_01B3L;
        for (byte b : dst.getAddress().getAddress()) {
            h = (h ^ (b & 0xff)) * 0x100_0000_01B3L;
        }
        h = (h ^ dst.getPort()) * 0x100_0000_01B3L;
        return (h ^ (h >>> 32)) & 0xFFFF_FFFFL;
    }

    /** One TCP segment from {@code src} to {@code dst} carrying {@code b[off, off + len)}. */
    synchronized void segment(InetSocketAddress src, InetSocketAddress dst, long seq, long ack, int flags, byte[] b,
                              int off, int len) {
        if (failed || closed) {
            return;
        }
        ByteBuffer f = ByteBuffer.allocate(HEADERS + len);
        byte[] s = src.getAddress().getAddress();
        byte[] d = dst.getAddress().getAddress();
        f.put((byte) 2).put((byte) 0).put(d).put((byte) 2).put((byte) 0).put(s).putShort((short) 0x0800);
        int ip = f.position();
        f.put((byte) 0x45).put((byte) 0).putShort((short) (40 + len)).putShort((short) 0).putShort((short) 0x4000)
                .put((byte) 64).put((byte) 6).putShort((short) 0).put(s).put(d);
        f.putShort(ip + 10, (short) checksum(f.array(), ip, 20, 0));
        int tcp = f.position();
        f.putShort((short) src.getPort()).putShort((short) dst.getPort()).putInt((int) seq).putInt((int) ack)
                .put((byte) 0x50).put((byte) flags).putShort((short) 0xffff).putShort((short) 0).putShort((short) 0);
        f.put(b, off, len);
        long pseudo = sum(s, 0, 4) + sum(d, 0, 4) + 6 + 20 + len;
        f.putShort(tcp + 16, (short) checksum(f.array(), tcp, 20 + len, pseudo));
        Instant now = Instant.now();
        ByteBuffer r = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
        r.putInt((int) now.getEpochSecond()).putInt(now.getNano() / 1000).putInt(f.capacity()).putInt(f.capacity());
        try {
            out.write(r.array());
            out.write(f.array());
        } catch (IOException x) {
            failed = true;
            LOG.error("siw: writing the capture {} failed: the capture stops", file, x);
        }
    }

    private static long sum(byte[] b, int off, int len) {
        long s = 0;
        for (int i = 0; i < len; i += 2) {
            s += (b[off + i] & 0xff) << 8 | (i + 1 < len ? b[off + i + 1] & 0xff : 0);
        }
        return s;
    }

    /** The Internet checksum (RFC 1071) of {@code b[off, off + len)} plus {@code initial}. */
    private static int checksum(byte[] b, int off, int len, long initial) {
        long s = initial + sum(b, off, len);
        while ((s >>> 16) != 0) {
            s = (s & 0xffff) + (s >>> 16);
        }
        return (int) ~s & 0xffff;
    }

    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            out.close();
        } catch (IOException x) {
            LOG.error("siw: closing the capture {} failed: it may be truncated", file, x);
        }
    }
}
