package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.Gid;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Predicate;

/**
 * RoCEv2 over the operating system's UDP ({@code rxe_net.c}: the UDP tunnel on port 4791): one HCA port's IPv4
 * address bound to a datagram socket ({@link UdpSocket}) on port {@value WireCodec#ROCE_PORT}. Packets leave as the
 * datagrams {@link WireCodec} encodes (the kernel adds the IP and UDP headers), a burst of the engine in one batch;
 * a receive thread reads what is waiting, puts the IP and UDP headers each datagram came with back in front to check
 * the ICRC, has the engine check the keys and the QP ({@link Engine#accept}) and hands it the batch's packets as one
 * burst ({@link Engine#receive}), so that one pass handles them and acknowledges them with one coalesced ACK.
 * Payloads are bytes here: nothing is handed over by reference. For tests it can drop every {@code n}th datagram it
 * sends and swap consecutive pairs.
 */
final class UdpTransport implements Transport, AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(UdpTransport.class);
    private static final Duration JOIN = Duration.ofSeconds(10);

    private final InetAddress address;
    private final Gid gid;
    /** The port's IPv4 address as an int in network order. */
    private final int localIp;
    private final UdpSocket socket;
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
    /** Loss injection for tests: a packet this accepts is dropped before it is encoded (null: none is). */
    volatile Predicate<Packet> loss;

    // used by the thread running the sending engine
    private long count;
    private byte[] held;
    private int heldLen;
    private final byte[][] out = new byte[UdpSocket.BATCH][];
    private final int[] outLen = new int[UdpSocket.BATCH];
    private int outCount;

    // used by the receive thread
    private final List<Packet> arrived = new ArrayList<>(UdpSocket.BATCH);
    /** The IP and UDP headers a datagram came with, put back in front of the start of its UDP payload. */
    private final byte[] head = new byte[WireCodec.BTH_AT + WireCodec.HEAD];
    /** The GID of the last source address seen ({@link #fromIp}), or null. */
    private Gid from;
    private int fromIp;
    /** The source port and UDP payload length the IP and UDP headers in {@link #head} are for (-1: none yet). */
    private int headPort = -1;
    private int headLen = -1;
    /** The ICRC of what arrives, holding the masked IP and UDP headers of {@link #head}. */
    private final Icrc icrc = new Icrc();

    private UdpTransport(InetAddress address, UdpSocket socket) {
        this.address = address;
        this.gid = Gid.of(address);
        this.localIp = WireCodec.ipv4(gid);
        this.socket = socket;
    }

    /**
     * Binds {@code address}:{@value WireCodec#ROCE_PORT}, on the batched native socket when {@code nativeSocket} and
     * the platform has it ({@link UdpSocket#bind}).
     *
     * @throws ErrnoException {@code EINVAL} for an address that is not IPv4, {@code EADDRINUSE} or
     *                        {@code EADDRNOTAVAIL} when the socket cannot be bound there, {@code EIO} otherwise
     */
    static UdpTransport bind(InetAddress address, boolean nativeSocket) {
        if (!(address instanceof Inet4Address v4)) {
            throw new ErrnoException(Errno.EINVAL, "rxe: RoCEv2 over UDP needs an IPv4 address, not " + address);
        }
        return new UdpTransport(address, UdpSocket.bind(v4, nativeSocket));
    }

    /** Whether this transport's socket sends and receives in batches ({@link MmsgSocket}). */
    boolean batched() {
        return socket.batched();
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

    /** Shuts the socket down, waits for the receive thread and closes it: nothing arrives any more. */
    @Override
    public synchronized void close() {
        socket.shutdown();
        Thread t = receiver;
        try {
            if (t != null && !t.join(JOIN)) {
                LOG.error("rxe: the UDP receive thread of {} did not end within {}", address, JOIN);
                return; // the socket stays open rather than freed under a receive
            }
        } catch (InterruptedException x) {
            Thread.currentThread().interrupt();
            return;
        }
        socket.close();
    }

    @Override
    public boolean perPacket() {
        return dropEvery > 0 || swapPairs || loss != null;
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

    /**
     * Encodes the burst straight into the native socket's send slots when nothing is injected; otherwise (and on a
     * channel) datagram by datagram through {@link #emit}, which drops or holds some back.
     */
    @Override
    public void send(List<Packet> burst) {
        Engine e = engine;
        if (!perPacket() && socket instanceof MmsgSocket m) {
            flushHeld(); // injection was on until now
            flushOut();
            MmsgSocket.Sent r = m.sendEncoded(slots -> {
                for (int i = 0, n = burst.size(); i < n; i++) {
                    Packet p = burst.get(i);
                    WireCodec.encode(p, e.service(p), WireCodec.ROCE_PORT, slots);
                }
            });
            sent.addAndGet(r.sent());
            if (r.sent() < r.made()) {
                dropped.addAndGet(r.made() - r.sent());
            }
            return;
        }
        Predicate<Packet> lost = loss;
        for (int i = 0, n = burst.size(); i < n; i++) {
            Packet p = burst.get(i);
            if (lost != null && lost.test(p)) {
                dropped.addAndGet(p.count());
                continue;
            }
            WireCodec.encode(p, e.service(p), WireCodec.ROCE_PORT, this::emit);
        }
        flushHeld();
        flushOut();
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

    /** Queues a datagram for the batch; a full batch leaves now. */
    private void transmit(byte[] d, int len) {
        out[outCount] = d;
        outLen[outCount++] = len;
        if (outCount == out.length) {
            flushOut();
        }
    }

    /** Sends the batch: one system call on the native socket, one per datagram on a channel. */
    private void flushOut() {
        int n = outCount;
        if (n == 0) {
            return;
        }
        outCount = 0;
        int ok = socket.send(out, outLen, n);
        Arrays.fill(out, 0, n, null);
        sent.addAndGet(ok);
        if (ok < n) {
            dropped.addAndGet(n - ok);
        }
    }

    private void receiveLoop() {
        while (socket.receive(this::arrived) >= 0) {
            if (arrived.isEmpty()) {
                continue;
            }
            int n = arrived.size();
            if (!engine.receive(arrived)) {
                dropped.addAndGet(n);
            }
            arrived.clear();
        }
    }

    /**
     * One datagram of a batch: its headers put back in front of the start of its payload, checked, and kept for the
     * batch's burst when it passes, its payload still where the socket received it (the burst is delivered, or its
     * packets copied off, before the socket receives again).
     */
    private void arrived(MemorySegment udp, int srcIp, int srcPort, boolean truncated) {
        received.incrementAndGet();
        Engine e = engine;
        if (truncated) {
            e.refuse(WireCodec.Drop.MALFORMED, "datagram of over " + UdpSocket.MAX_DATAGRAM + " bytes or not IPv4");
            return;
        }
        int len = (int) udp.byteSize();
        if (from == null || srcIp != fromIp) { // a batch mostly comes from one peer
            byte[] ip = new byte[4];
            WireCodec.put32(ip, 0, srcIp);
            from = WireCodec.v4mapped(ip, 0);
            fromIp = srcIp;
            headLen = -1;
        }
        if (len != headLen || srcPort != headPort) { // a train's datagrams have the same headers
            WireCodec.ipUdp(head, srcIp, localIp, srcPort, WireCodec.ROCE_PORT, len);
            icrc.ipUdp(head);
            headLen = len;
            headPort = srcPort;
        }
        MemorySegment.copy(udp, ValueLayout.JAVA_BYTE, 0, head, WireCodec.BTH_AT, Math.min(len, WireCodec.HEAD));
        Packet p = e.accept(head, udp, icrc, from, gid);
        if (p != null) {
            arrived.add(p);
        }
    }
}
