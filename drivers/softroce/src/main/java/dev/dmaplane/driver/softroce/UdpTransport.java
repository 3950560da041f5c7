package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.Gid;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.net.BindException;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.DatagramChannel;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * RoCEv2 over the operating system's UDP ({@code rxe_net.c}: the UDP tunnel on port 4791): one HCA port's IPv4
 * address bound to a datagram socket on port {@value WireCodec#ROCE_PORT}. Packets leave as the datagrams
 * {@link WireCodec} encodes (the kernel adds the IP and UDP headers); a receive thread reads datagrams, puts the IP
 * and UDP headers they came with back in front to check the ICRC, and hands what is well formed to the engine
 * ({@link Engine#receiveDatagram}), which checks the keys and the QP. Payloads are bytes here: nothing is handed
 * over by reference. For tests it can drop every {@code n}th datagram it sends and swap consecutive pairs.
 */
final class UdpTransport implements Transport, AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(UdpTransport.class);
    /** Socket buffers: a 1 MiB message at MTU 1024 is about 3 MiB of kernel buffers on the loopback. */
    private static final int SOCKET_BUFFER = 8 << 20;
    private static final Duration JOIN = Duration.ofSeconds(10);

    private final InetAddress address;
    private final Gid gid;
    private final DatagramChannel channel;
    private volatile Engine engine;
    private Thread receiver;
    final AtomicLong sent = new AtomicLong();
    final AtomicLong received = new AtomicLong();
    /** Datagrams lost: dropped by injection, by a send that failed, or by the sender without carrier. */
    final AtomicLong dropped = new AtomicLong();
    /** Loss injection: every this many datagrams sent, one is dropped (0: none). */
    volatile int dropEvery;
    /** Reordering injection: each datagram sent is held back and sent after the next one. */
    volatile boolean swapPairs;

    // used by the thread running the sending engine
    private long count;
    private byte[] held;
    private int heldLen;

    private UdpTransport(InetAddress address, DatagramChannel channel) {
        this.address = address;
        this.gid = Gid.of(address);
        this.channel = channel;
    }

    /**
     * Binds {@code address}:{@value WireCodec#ROCE_PORT}.
     *
     * @throws ErrnoException {@code EINVAL} for an address that is not IPv4, {@code EADDRINUSE} or
     *                        {@code EADDRNOTAVAIL} when the socket cannot be bound there, {@code EIO} otherwise
     */
    static UdpTransport bind(InetAddress address) {
        if (!(address instanceof Inet4Address)) {
            throw new ErrnoException(Errno.EINVAL, "rxe: RoCEv2 over UDP needs an IPv4 address, not " + address);
        }
        DatagramChannel ch = null;
        try {
            ch = DatagramChannel.open(StandardProtocolFamily.INET);
            ch.setOption(StandardSocketOptions.SO_RCVBUF, SOCKET_BUFFER);
            ch.setOption(StandardSocketOptions.SO_SNDBUF, SOCKET_BUFFER);
            ch.bind(new InetSocketAddress(address, WireCodec.ROCE_PORT));
            return new UdpTransport(address, ch);
        } catch (BindException e) {
            closeQuietly(ch, address);
            boolean inUse = String.valueOf(e.getMessage()).contains("in use");
            throw new ErrnoException(inUse ? Errno.EADDRINUSE : Errno.EADDRNOTAVAIL,
                    "rxe: cannot bind " + address.getHostAddress() + ":" + WireCodec.ROCE_PORT + ": " + e.getMessage(),
                    e);
        } catch (IOException e) {
            closeQuietly(ch, address);
            throw new ErrnoException(Errno.EIO, "rxe: UDP socket on " + address.getHostAddress() + ": "
                    + e.getMessage(), e);
        }
    }

    private static void closeQuietly(DatagramChannel ch, InetAddress address) {
        if (ch == null) {
            return;
        }
        try {
            ch.close();
        } catch (IOException x) {
            LOG.error("rxe: closing the socket of {} after a failed bind failed", address, x);
        }
    }

    InetAddress address() {
        return address;
    }

    /** Starts the receive thread, which hands what arrives to {@code e}. */
    synchronized void start(Engine e) {
        this.engine = e;
        receiver = Thread.ofPlatform().name("softroce-udp-" + address.getHostAddress()).daemon()
                .start(this::receiveLoop);
    }

    /** Closes the socket and waits for the receive thread: nothing arrives any more. */
    @Override
    public synchronized void close() {
        try {
            channel.close();
        } catch (IOException x) {
            LOG.error("rxe: closing the UDP socket of {} failed", address, x);
        }
        Thread t = receiver;
        if (t == null) {
            return;
        }
        try {
            if (!t.join(JOIN)) {
                LOG.error("rxe: the UDP receive thread of {} did not end within {}", address, JOIN);
            }
        } catch (InterruptedException x) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public boolean perPacket() {
        return dropEvery > 0 || swapPairs;
    }

    /**
     * rxe's {@code RXE_MAX_UNACKED_PSNS}: at MTU 4096, 512 KiB of payload on its way, well inside the receiver's
     * socket buffer, which the kernel would otherwise overflow with a burst and lose the rest (go-back-N then
     * recovers it, after a sequence NAK or a transport timeout).
     */
    static final int MAX_UNACKED_PSNS = 128;

    @Override
    public int maxUnackedPsns() {
        return MAX_UNACKED_PSNS;
    }

    @Override
    public void dropped(int n) {
        dropped.addAndGet(n);
    }

    @Override
    public void send(List<Packet> burst) {
        Engine e = engine;
        for (int i = 0, n = burst.size(); i < n; i++) {
            Packet p = burst.get(i);
            WireCodec.encode(p, e.service(p), WireCodec.ROCE_PORT, this::emit);
        }
        flushHeld();
    }

    private void emit(byte[] d, int len) {
        int every = dropEvery;
        if (every > 0 && ++count % every == 0) {
            dropped.incrementAndGet();
            return;
        }
        if (swapPairs) {
            if (held == null) {
                held = d;
                heldLen = len;
                return;
            }
            transmit(d, len);
            flushHeld();
            return;
        }
        transmit(d, len);
    }

    /** Sends the datagram held back for reordering, if any. */
    private void flushHeld() {
        byte[] h = held;
        if (h != null) {
            held = null;
            transmit(h, heldLen);
        }
    }

    private void transmit(byte[] d, int len) {
        try {
            InetAddress to = InetAddress.getByAddress(new byte[]{d[16], d[17], d[18], d[19]});
            channel.send(ByteBuffer.wrap(d, WireCodec.BTH_AT, len - WireCodec.BTH_AT),
                    new InetSocketAddress(to, WireCodec.ROCE_PORT));
            sent.incrementAndGet();
        } catch (ClosedChannelException x) {
            dropped.incrementAndGet(); // the port is going away
        } catch (IOException x) {
            dropped.incrementAndGet();
            LOG.warn("rxe: UDP send from {} failed: the datagram is lost", address, x);
        }
    }

    private void receiveLoop() {
        byte[] buf = new byte[WireCodec.BTH_AT + 65536];
        ByteBuffer bb = ByteBuffer.wrap(buf);
        while (channel.isOpen()) {
            bb.limit(buf.length).position(WireCodec.BTH_AT);
            SocketAddress from;
            try {
                from = channel.receive(bb);
            } catch (ClosedChannelException x) {
                return; // closed: the port went away
            } catch (IOException x) {
                LOG.error("rxe: UDP receive on {} failed", address, x);
                continue;
            }
            received.incrementAndGet();
            int len = bb.position() - WireCodec.BTH_AT;
            Engine e = engine;
            if (!(from instanceof InetSocketAddress src) || !(src.getAddress() instanceof Inet4Address)) {
                e.refuse(WireCodec.Drop.MALFORMED, "datagram from " + from);
                continue;
            }
            WireCodec.ipUdp(buf, Gid.of(src.getAddress()), gid, src.getPort(), WireCodec.ROCE_PORT, len);
            if (!e.receiveDatagram(buf, WireCodec.BTH_AT + len)) {
                dropped.incrementAndGet();
            }
        }
    }
}
