package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.PcapFile;

import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.file.Path;

/**
 * A capture file as {@code tcpdump -w} writes it (libpcap, {@code LINKTYPE_ETHERNET}, microsecond stamps) of what
 * siw's connections carry: each MPA frame and FPDU as one TCP segment of its own (the framing Wireshark's MPA
 * dissector expects), in Ethernet II (locally administered MACs made of the IPv4 addresses, {@code 02:00:a.b.c.d})
 * and IPv4 with its header checksum, TCP with sequence and acknowledgement numbers that follow the bytes each side
 * sent and received from an initial sequence number derived from the connection's addresses, and the TCP
 * checksum; the active side adds the three-way handshake and each side its FIN. The file is rdma-core's
 * {@link PcapFile}, which frames each IPv4 packet and serialises the writes.
 */
final class TcpCapture implements AutoCloseable {
    static final int SYN = 0x02;
    static final int ACK = 0x10;
    static final int PSH = 0x08;
    static final int FIN = 0x01;
    private static final int HEADERS = 20 + 20;

    private final PcapFile pcap;

    private TcpCapture(PcapFile pcap) {
        this.pcap = pcap;
    }

    /** The TCP view of {@code pcap}, or null for no capture. */
    static TcpCapture of(PcapFile pcap) {
        return pcap == null ? null : new TcpCapture(pcap);
    }

    Path file() {
        return pcap.file();
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
    void segment(InetSocketAddress src, InetSocketAddress dst, long seq, long ack, int flags, byte[] b, int off,
                 int len) {
        ByteBuffer f = ByteBuffer.allocate(HEADERS + len);
        byte[] s = src.getAddress().getAddress();
        byte[] d = dst.getAddress().getAddress();
        f.put((byte) 0x45).put((byte) 0).putShort((short) (40 + len)).putShort((short) 0).putShort((short) 0x4000)
                .put((byte) 64).put((byte) 6).putShort((short) 0).put(s).put(d);
        f.putShort(10, (short) checksum(f.array(), 0, 20, 0));
        int tcp = f.position();
        f.putShort((short) src.getPort()).putShort((short) dst.getPort()).putInt((int) seq).putInt((int) ack)
                .put((byte) 0x50).put((byte) flags).putShort((short) 0xffff).putShort((short) 0).putShort((short) 0);
        f.put(b, off, len);
        long pseudo = sum(s, 0, 4) + sum(d, 0, 4) + 6 + 20 + len;
        f.putShort(tcp + 16, (short) checksum(f.array(), tcp, 20 + len, pseudo));
        pcap.ipv4(f.array(), 0, f.capacity());
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
    public void close() {
        pcap.close();
    }
}
