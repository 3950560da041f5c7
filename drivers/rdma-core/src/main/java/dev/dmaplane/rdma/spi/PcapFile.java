package dev.dmaplane.rdma.spi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;

/**
 * A capture file as {@code tcpdump -w} writes it (libpcap format, {@code LINKTYPE_ETHERNET}, microsecond
 * timestamps) of the IPv4 packets a software HCA puts on its wire, each framed in Ethernet II with locally
 * administered MACs made of the packet's IPv4 addresses ({@code 02:00:a.b.c.d}): what a driver's {@code pcap}
 * command writes. Writes are serialised; a write that fails stops the capture (logged with its stack), never the
 * sender.
 */
public final class PcapFile implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(PcapFile.class);
    private static final int ETHERNET = 14;
    /** Frames up to an IPv4 packet of 65535 bytes in Ethernet, whole. */
    private static final int SNAPLEN = ETHERNET + 65535;

    private final Path file;
    private final String driver;
    private final OutputStream out;
    private final byte[] record = new byte[16 + ETHERNET];
    private boolean failed;
    private boolean closed;

    private PcapFile(Path file, String driver, OutputStream out) {
        this.file = file;
        this.driver = driver;
        this.out = out;
    }

    /**
     * Creates (or truncates) {@code file} with the capture's global header; {@code driver} names the driver in
     * messages ({@code rxe}, {@code siw}).
     *
     * @throws ErrnoException {@code EIO} naming the file when it cannot be written
     */
    public static PcapFile open(Path file, String driver) {
        try {
            OutputStream out = new BufferedOutputStream(Files.newOutputStream(file), 1 << 16);
            byte[] h = new byte[24];
            le32(h, 0, 0xa1b2c3d4);
            le16(h, 4, 2);
            le16(h, 6, 4);
            le32(h, 16, SNAPLEN);
            le32(h, 20, 1); // LINKTYPE_ETHERNET
            out.write(h);
            return new PcapFile(file, driver, out);
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, driver + ": cannot write the capture " + file + ": " + e.getMessage(),
                    e);
        }
    }

    public Path file() {
        return file;
    }

    /** Appends the IPv4 packet {@code p[off, off + len)} as one Ethernet frame stamped now. */
    public synchronized void ipv4(byte[] p, int off, int len) {
        if (failed || closed) {
            return;
        }
        Instant now = Instant.now();
        le32(record, 0, (int) now.getEpochSecond());
        le32(record, 4, now.getNano() / 1000);
        le32(record, 8, ETHERNET + len);
        le32(record, 12, ETHERNET + len);
        int e = 16;
        record[e] = 0x02;
        record[e + 1] = 0;
        System.arraycopy(p, off + 16, record, e + 2, 4); // destination: the IPv4 destination
        record[e + 6] = 0x02;
        record[e + 7] = 0;
        System.arraycopy(p, off + 12, record, e + 8, 4);
        record[e + 12] = 0x08; // IPv4
        record[e + 13] = 0x00;
        try {
            out.write(record);
            out.write(p, off, len);
        } catch (IOException x) {
            failed = true;
            LOG.error("{}: writing the capture {} failed: the capture stops", driver, file, x);
        }
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
            LOG.error("{}: closing the capture {} failed: it may be truncated", driver, file, x);
        }
    }

    private static void le16(byte[] b, int at, int v) {
        b[at] = (byte) v;
        b[at + 1] = (byte) (v >>> 8);
    }

    private static void le32(byte[] b, int at, int v) {
        le16(b, at, v);
        le16(b, at + 2, v >>> 16);
    }
}
