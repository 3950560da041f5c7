package dev.dmaplane.rdma.spi;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The capture file the software HCAs write (libpcap's file format, pcap-savefile(5): the global header with magic
 * 0xa1b2c3d4, version 2.4, the snapshot length and LINKTYPE_ETHERNET, then a record header and the frame per
 * packet), each IPv4 packet in an Ethernet II frame whose MACs are 02:00 and the packet's IPv4 addresses.
 */
class PcapFileTest {
    @TempDir
    Path dir;

    @Test
    void eachPacketIsOneEthernetFrameAfterTheGlobalHeader() throws Exception {
        Path f = dir.resolve("c.pcap");
        byte[] ip = new byte[40];
        ip[0] = 0x45;
        byte[] src = {10, 0, 0, 4};
        byte[] dst = {10, 0, 0, 5};
        System.arraycopy(src, 0, ip, 12, 4);
        System.arraycopy(dst, 0, ip, 16, 4);
        byte[] framed = new byte[3 + ip.length];
        System.arraycopy(ip, 0, framed, 3, ip.length);
        try (PcapFile p = PcapFile.open(f, "test")) {
            assertEquals(f, p.file());
            p.ipv4(framed, 3, ip.length);
            p.ipv4(ip, 0, 20);
        }
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(f)).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(0xa1b2c3d4, b.getInt(0));
        assertEquals(2, b.getShort(4));
        assertEquals(4, b.getShort(6));
        assertEquals(14 + 65535, b.getInt(16), "whole IPv4 packets in Ethernet");
        assertEquals(1, b.getInt(20), "LINKTYPE_ETHERNET");
        int at = 24;
        for (int len : new int[]{40, 20}) {
            assertEquals(14 + len, b.getInt(at + 8), "captured length");
            assertEquals(14 + len, b.getInt(at + 12), "length on the wire");
            byte[] frame = Arrays.copyOfRange(b.array(), at + 16, at + 16 + 14 + len);
            assertArrayEquals(new byte[]{2, 0, 10, 0, 0, 5, 2, 0, 10, 0, 0, 4, 8, 0}, Arrays.copyOf(frame, 14));
            assertArrayEquals(Arrays.copyOf(ip, len), Arrays.copyOfRange(frame, 14, frame.length));
            at += 16 + 14 + len;
        }
        assertEquals(b.capacity(), at, "nothing else");
    }

    @Test
    void aFileThatCannotBeWrittenIsEioNamingIt() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> PcapFile.open(dir, "test"));
        assertEquals(Errno.EIO, e.errno());
        assertTrue(e.getMessage().contains("test: cannot write the capture " + dir), e.getMessage());
    }
}
