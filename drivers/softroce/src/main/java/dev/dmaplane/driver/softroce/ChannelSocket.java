package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.net.BindException;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.StandardSocketOptions;
import java.net.UnknownHostException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.DatagramChannel;

/**
 * A {@link UdpSocket} on a {@link DatagramChannel}: one system call per datagram ({@code rxe_net.c}'s UDP tunnel
 * socket as any platform offers it). Receives hand one datagram at a time.
 */
final class ChannelSocket implements UdpSocket {
    private static final Logger LOG = LoggerFactory.getLogger(ChannelSocket.class);

    private final InetAddress address;
    private final DatagramChannel channel;
    private final byte[] buf = new byte[WireCodec.BTH_AT + 65536];
    private final ByteBuffer rx = ByteBuffer.wrap(buf);

    private ChannelSocket(InetAddress address, DatagramChannel channel) {
        this.address = address;
        this.channel = channel;
    }

    static ChannelSocket bind(Inet4Address address) {
        DatagramChannel ch = null;
        try {
            ch = DatagramChannel.open(StandardProtocolFamily.INET);
            ch.setOption(StandardSocketOptions.SO_RCVBUF, SOCKET_BUFFER);
            ch.setOption(StandardSocketOptions.SO_SNDBUF, SOCKET_BUFFER);
            ch.bind(new InetSocketAddress(address, WireCodec.ROCE_PORT));
            return new ChannelSocket(address, ch);
        } catch (BindException e) {
            closeAfterFailure(ch, address);
            boolean inUse = String.valueOf(e.getMessage()).contains("in use");
            throw new ErrnoException(inUse ? Errno.EADDRINUSE : Errno.EADDRNOTAVAIL,
                    "rxe: cannot bind " + address.getHostAddress() + ":" + WireCodec.ROCE_PORT + ": " + e.getMessage(),
                    e);
        } catch (IOException e) {
            closeAfterFailure(ch, address);
            throw new ErrnoException(Errno.EIO, "rxe: UDP socket on " + address.getHostAddress() + ": "
                    + e.getMessage(), e);
        }
    }

    private static void closeAfterFailure(DatagramChannel ch, InetAddress address) {
        if (ch == null) {
            return;
        }
        try {
            ch.close();
        } catch (IOException x) {
            LOG.error("rxe: closing the socket of {} after a failed bind failed", address, x);
        }
    }

    @Override
    public int send(byte[][] d, int[] len, int count) {
        int sent = 0;
        for (int i = 0; i < count; i++) {
            byte[] b = d[i];
            try {
                InetAddress to = InetAddress.getByAddress(new byte[]{b[16], b[17], b[18], b[19]});
                channel.send(ByteBuffer.wrap(b, WireCodec.BTH_AT, len[i] - WireCodec.BTH_AT),
                        new InetSocketAddress(to, WireCodec.ROCE_PORT));
                sent++;
            } catch (ClosedChannelException x) {
                return sent; // the port is going away
            } catch (UnknownHostException x) {
                throw new IllegalStateException("four bytes are always an IPv4 address", x);
            } catch (IOException x) {
                LOG.warn("rxe: UDP send from {} failed: the datagram is lost", address, x);
            }
        }
        return sent;
    }

    @Override
    public int receive(Receiver r) {
        while (channel.isOpen()) {
            rx.limit(buf.length).position(WireCodec.BTH_AT);
            SocketAddress from;
            try {
                from = channel.receive(rx);
            } catch (ClosedChannelException x) {
                return -1; // closed: the port went away
            } catch (IOException x) {
                LOG.error("rxe: UDP receive on {} failed", address, x);
                continue;
            }
            int len = rx.position() - WireCodec.BTH_AT;
            if (from instanceof InetSocketAddress src && src.getAddress() instanceof Inet4Address v4) {
                byte[] a = v4.getAddress();
                r.datagram(MemorySegment.ofArray(buf).asSlice(WireCodec.BTH_AT, len), (a[0] & 0xff) << 24
                        | (a[1] & 0xff) << 16 | (a[2] & 0xff) << 8 | a[3] & 0xff, src.getPort(), false);
            } else {
                r.datagram(MemorySegment.ofArray(buf).asSlice(WireCodec.BTH_AT, len), 0, 0, true); // not IPv4: malformed
            }
            return 1;
        }
        return -1;
    }

    @Override
    public void shutdown() {
        close(); // closing the channel wakes its receive
    }

    @Override
    public void close() {
        try {
            channel.close();
        } catch (IOException x) {
            LOG.error("rxe: closing the UDP socket of {} failed", address, x);
        }
    }

    @Override
    public boolean batched() {
        return false;
    }
}
