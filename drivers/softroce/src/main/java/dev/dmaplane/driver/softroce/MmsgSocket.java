package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.Inet4Address;
import java.nio.ByteOrder;
import java.util.function.Consumer;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A {@link UdpSocket} made with libc's {@code socket}/{@code bind} and driven by {@code sendmmsg(2)} and
 * {@code recvmmsg(2)} through the foreign-function API: a burst leaves in one system call, and a receive takes every
 * datagram waiting (up to {@link #BATCH}) in one ({@code MSG_WAITFORONE}: it waits for the first only). Linux on
 * x86-64 or AArch64 (the {@code struct mmsghdr} layout and the constants below are theirs).
 * <p>
 * Runs of datagrams of one size to one destination leave as one UDP GSO send ({@code UDP_SEGMENT}, udp(7)): the
 * kernel cuts them back into the same datagrams, on the loopback only when a receiver without GRO takes them. The
 * socket asks for {@code UDP_GRO}, so such a run reaches it whole, with its segment size in a control message, and
 * it hands the datagrams on one by one. A path that refuses GSO (a device MTU below the segment size) turns it off
 * for the socket and the run leaves datagram by datagram.
 * <p>
 * The send and receive vectors, the GSO grouping and the GRO cutting stay in one class: they all read and write the
 * same native {@code struct mmsghdr} arrays, whose layout constants are kept here once. The libc calls, their
 * {@code errno} and {@code strerror} are {@link Libc}'s.
 */
final class MmsgSocket implements UdpSocket {
    private static final Logger LOG = LoggerFactory.getLogger(MmsgSocket.class);
    private static final int AF_INET = 2;
    private static final int SOCK_DGRAM = 2;
    private static final int SOCK_CLOEXEC = 0x80000;
    private static final int SOL_SOCKET = 1;
    private static final int SO_SNDBUF = 7;
    private static final int SO_RCVBUF = 8;
    private static final int SHUT_RDWR = 2;
    private static final int MSG_TRUNC = 0x20;
    private static final int SOL_UDP = 17;
    /** udp(7): the segment size of a GSO send (a {@code uint16_t} control message). */
    private static final int UDP_SEGMENT = 103;
    /** udp(7): receive GSO runs whole, the segment size in an {@code int} control message. */
    private static final int UDP_GRO = 104;
    /** {@code UDP_MAX_SEGMENTS} of the kernels that have GSO (later ones allow 128). */
    private static final int GSO_MAX_SEGMENTS = 64;
    /** The UDP payload of one GSO send: its IPv4 total length is 16 bits ({@code ip_append_data}'s limit). */
    private static final int GSO_MAX_BYTES = 0xffff - 20 - 8;
    /** A receive slot: a GRO run of up to 64 KiB. */
    private static final int RX_SLOT = 1 << 16;
    /** Receive slots: each a datagram, or a GRO run of them. */
    private static final int RX_SLOTS = 32;
    /** {@code struct cmsghdr}: length, level, type, then the data at 16. */
    private static final int CMSGHDR = 16;
    /** Room for one control message of up to 8 bytes of data ({@code CMSG_SPACE(8)}). */
    private static final int CMSG_SPACE = 24;
    private static final int MSG_WAITFORONE = 0x10000;
    /** {@code struct sockaddr_in}. */
    private static final int SOCKADDR_IN = 16;
    /** {@code struct iovec}: base, length. */
    private static final int IOVEC = 16;
    /** {@code struct mmsghdr}: a {@code struct msghdr} of 56 bytes, {@code msg_len}, padding. */
    private static final int MMSGHDR = 64;
    private static final int MSG_NAME = 0;
    private static final int MSG_NAMELEN = 8;
    private static final int MSG_IOV = 16;
    private static final int MSG_IOVLEN = 24;
    private static final int MSG_CONTROL = 32;
    private static final int MSG_CONTROLLEN = 40;
    private static final int MSG_FLAGS = 48;
    private static final int MSG_LEN = 56;
    private static final ValueLayout.OfShort BE_SHORT =
            ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfInt BE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    /** Whether this platform has the calls and the layout used here ({@link Libc}). */
    static final boolean AVAILABLE = Libc.AVAILABLE;

    private final Inet4Address address;
    private final int fd;
    private final Arena arena = Arena.ofShared();
    private final Tx tx = new Tx(arena);
    private final Rx rx = new Rx(arena);
    private volatile boolean shut;
    private boolean closed;
    /** Whether runs leave as GSO sends: until a path refuses one. Used under the socket's lock. */
    private boolean gso = true;
    /** Whether the socket took {@code UDP_GRO} (an older kernel refuses it: runs then arrive cut). */
    private final boolean gro;
    /** GSO sends that left (runs of more than one datagram). */
    private final AtomicLong gsoRuns = new AtomicLong();
    /** Receives that came as a GRO run of more than one datagram. */
    private final AtomicLong groRuns = new AtomicLong();

    /**
     * The send side's vectors, used under the socket's lock: a slot and an iovec per datagram, in order, and a
     * message header per run (its iovecs are the run's, consecutive; a GSO run carries its segment size in its
     * control message).
     */
    private static final class Tx {
        final MemorySegment state;
        final MemorySegment msgs;
        final MemorySegment iovs;
        final MemorySegment names;
        final MemorySegment controls;
        final MemorySegment data;
        /** The first datagram and the number of datagrams of each message header of a send. */
        final int[] runFirst = new int[BATCH];
        final int[] runCount = new int[BATCH];

        Tx(Arena a) {
            state = a.allocate(Libc.CAPTURE);
            msgs = a.allocate((long) MMSGHDR * BATCH, 8);
            iovs = a.allocate((long) IOVEC * BATCH, 8);
            names = a.allocate((long) SOCKADDR_IN * BATCH, 8);
            controls = a.allocate((long) CMSG_SPACE * BATCH, 8);
            data = a.allocate((long) MAX_DATAGRAM * BATCH, 64);
            for (int k = 0; k < BATCH; k++) {
                MemorySegment m = msgs.asSlice((long) k * MMSGHDR, MMSGHDR);
                m.set(ValueLayout.ADDRESS, MSG_NAME, names.asSlice((long) k * SOCKADDR_IN, SOCKADDR_IN));
                m.set(ValueLayout.JAVA_INT, MSG_NAMELEN, SOCKADDR_IN);
                iovs.set(ValueLayout.ADDRESS, (long) k * IOVEC, data.asSlice((long) k * MAX_DATAGRAM, MAX_DATAGRAM));
                MemorySegment n = names.asSlice((long) k * SOCKADDR_IN, SOCKADDR_IN);
                n.set(ValueLayout.JAVA_SHORT, 0, (short) AF_INET);
                n.set(BE_SHORT, 2, (short) WireCodec.ROCE_PORT);
                MemorySegment c = controls.asSlice((long) k * CMSG_SPACE, CMSG_SPACE);
                c.set(ValueLayout.JAVA_LONG, 0, CMSGHDR + 2); // CMSG_LEN(sizeof(uint16_t))
                c.set(ValueLayout.JAVA_INT, 8, SOL_UDP);
                c.set(ValueLayout.JAVA_INT, 12, UDP_SEGMENT);
            }
        }

        /** Slot {@code k} holds {@code udpLen} bytes of UDP payload to the destination of the IP header {@code head}. */
        void filled(int k, byte[] head, int udpLen) {
            iovs.set(ValueLayout.JAVA_LONG, (long) k * IOVEC + 8, udpLen);
            // the destination as the IP header has it, in network order
            MemorySegment.copy(head, 16, names, ValueLayout.JAVA_BYTE, (long) k * SOCKADDR_IN + 4, 4);
        }

        int length(int k) {
            return (int) iovs.get(ValueLayout.JAVA_LONG, (long) k * IOVEC + 8);
        }

        int destination(int k) {
            return names.get(ValueLayout.JAVA_INT, (long) k * SOCKADDR_IN + 4);
        }

        /** Message header {@code k} sends datagrams {@code [first, first + count)} of the slots. */
        void run(int k, int first, int count, int segment) {
            runFirst[k] = first;
            runCount[k] = count;
            MemorySegment m = msgs.asSlice((long) k * MMSGHDR, MMSGHDR);
            m.set(ValueLayout.ADDRESS, MSG_IOV, iovs.asSlice((long) first * IOVEC, IOVEC));
            m.set(ValueLayout.JAVA_LONG, MSG_IOVLEN, count);
            MemorySegment.copy(names, (long) first * SOCKADDR_IN, names, (long) k * SOCKADDR_IN, SOCKADDR_IN);
            if (count > 1) {
                MemorySegment c = controls.asSlice((long) k * CMSG_SPACE, CMSG_SPACE);
                c.set(ValueLayout.JAVA_SHORT, CMSGHDR, (short) segment);
                m.set(ValueLayout.ADDRESS, MSG_CONTROL, c);
                m.set(ValueLayout.JAVA_LONG, MSG_CONTROLLEN, CMSG_SPACE);
            } else {
                m.set(ValueLayout.ADDRESS, MSG_CONTROL, MemorySegment.NULL);
                m.set(ValueLayout.JAVA_LONG, MSG_CONTROLLEN, 0);
            }
        }
    }

    /**
     * The receive side's vectors, used by the receiving thread: a slot per message, large enough for a GRO run,
     * whose datagrams are handed on where they are, and room for its control message.
     */
    private static final class Rx {
        final MemorySegment state;
        final MemorySegment msgs;
        final MemorySegment names;
        final MemorySegment controls;
        final MemorySegment data;

        Rx(Arena a) {
            state = a.allocate(Libc.CAPTURE);
            msgs = a.allocate((long) MMSGHDR * RX_SLOTS, 8);
            MemorySegment iovs = a.allocate((long) IOVEC * RX_SLOTS, 8);
            names = a.allocate((long) SOCKADDR_IN * RX_SLOTS, 8);
            controls = a.allocate((long) CMSG_SPACE * RX_SLOTS, 8);
            data = a.allocate((long) RX_SLOT * RX_SLOTS, 64);
            for (int k = 0; k < RX_SLOTS; k++) {
                MemorySegment m = msgs.asSlice((long) k * MMSGHDR, MMSGHDR);
                m.set(ValueLayout.ADDRESS, MSG_NAME, names.asSlice((long) k * SOCKADDR_IN, SOCKADDR_IN));
                m.set(ValueLayout.ADDRESS, MSG_IOV, iovs.asSlice((long) k * IOVEC, IOVEC));
                m.set(ValueLayout.JAVA_LONG, MSG_IOVLEN, 1);
                m.set(ValueLayout.ADDRESS, MSG_CONTROL, controls.asSlice((long) k * CMSG_SPACE, CMSG_SPACE));
                iovs.set(ValueLayout.ADDRESS, (long) k * IOVEC, data.asSlice((long) k * RX_SLOT, RX_SLOT));
                iovs.set(ValueLayout.JAVA_LONG, (long) k * IOVEC + 8, RX_SLOT);
            }
            reset(RX_SLOTS);
        }

        /** recvmmsg wrote over each used header's lengths and flags: the next call offers the whole room again. */
        void reset(int n) {
            for (int k = 0; k < n; k++) {
                long m = (long) k * MMSGHDR;
                msgs.set(ValueLayout.JAVA_INT, m + MSG_NAMELEN, SOCKADDR_IN);
                msgs.set(ValueLayout.JAVA_LONG, m + MSG_CONTROLLEN, CMSG_SPACE);
                msgs.set(ValueLayout.JAVA_INT, m + MSG_FLAGS, 0);
            }
        }

        /** The GRO segment size message {@code k} came with, or 0 when it is one datagram. */
        int groSegment(int k) {
            long len = msgs.get(ValueLayout.JAVA_LONG, (long) k * MMSGHDR + MSG_CONTROLLEN);
            MemorySegment c = controls.asSlice((long) k * CMSG_SPACE, CMSG_SPACE);
            if (len >= CMSGHDR + 4 && c.get(ValueLayout.JAVA_INT, 8) == SOL_UDP
                    && c.get(ValueLayout.JAVA_INT, 12) == UDP_GRO) {
                return c.get(ValueLayout.JAVA_INT, CMSGHDR);
            }
            return 0;
        }
    }

    private MmsgSocket(Inet4Address address, int fd, boolean gro) {
        this.address = address;
        this.fd = fd;
        this.gro = gro;
    }

    static MmsgSocket bind(Inet4Address address) {
        if (!AVAILABLE) {
            throw new ErrnoException(Errno.EOPNOTSUPP, "rxe: no sendmmsg/recvmmsg on this platform for " + address);
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = a.allocate(Libc.CAPTURE);
            int fd = (int) Libc.SOCKET.invokeExact(st, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                throw new ErrnoException(Errno.EIO, "rxe: socket(AF_INET, SOCK_DGRAM) for " + address + ": "
                        + Libc.strerror(Libc.errno(st)));
            }
            try {
                MemorySegment v = a.allocate(ValueLayout.JAVA_INT);
                v.set(ValueLayout.JAVA_INT, 0, SOCKET_BUFFER);
                for (int opt : new int[]{SO_RCVBUF, SO_SNDBUF}) {
                    if ((int) Libc.SETSOCKOPT.invokeExact(st, fd, SOL_SOCKET, opt, v, 4) != 0) {
                        throw new ErrnoException(Errno.EIO, "rxe: setsockopt(SOL_SOCKET, " + opt + ", "
                                + SOCKET_BUFFER + ") on " + address + ": " + Libc.strerror(Libc.errno(st)));
                    }
                }
                MemorySegment sin = a.allocate(SOCKADDR_IN, 8);
                sin.set(ValueLayout.JAVA_SHORT, 0, (short) AF_INET);
                sin.set(BE_SHORT, 2, (short) WireCodec.ROCE_PORT);
                sin.asSlice(4, 4).copyFrom(MemorySegment.ofArray(address.getAddress()));
                if ((int) Libc.BIND.invokeExact(st, fd, sin, SOCKADDR_IN) != 0) {
                    int e = Libc.errno(st);
                    Errno code = e == Libc.EADDRINUSE ? Errno.EADDRINUSE : e == Libc.EADDRNOTAVAIL ? Errno.EADDRNOTAVAIL
                            : Errno.EIO;
                    throw new ErrnoException(code, "rxe: cannot bind " + address.getHostAddress() + ":"
                            + WireCodec.ROCE_PORT + ": " + Libc.strerror(e));
                }
                v.set(ValueLayout.JAVA_INT, 0, 1);
                boolean gro = (int) Libc.SETSOCKOPT.invokeExact(st, fd, SOL_UDP, UDP_GRO, v, 4) == 0;
                if (!gro) {
                    LOG.debug("rxe: no UDP_GRO on {} ({}): GSO runs arrive cut into datagrams", address,
                            Libc.strerror(Libc.errno(st)));
                }
                return new MmsgSocket(address, fd, gro);
            } catch (RuntimeException | Error e) {
                int ignored = (int) Libc.CLOSE.invokeExact(st, fd);
                throw e;
            }
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw Libc.nativeFailure("rxe: native socket call failed", t);
        }
    }

    @Override
    public synchronized int send(byte[][] d, int[] len, int count) {
        int sent = 0;
        for (int at = 0; at < count && !shut; ) {
            int n = Math.min(BATCH, count - at);
            for (int k = 0; k < n; k++) {
                byte[] b = d[at + k];
                int udp = len[at + k] - WireCodec.BTH_AT;
                MemorySegment.copy(b, WireCodec.BTH_AT, tx.data, ValueLayout.JAVA_BYTE, (long) k * MAX_DATAGRAM, udp);
                tx.filled(k, b, udp);
            }
            sent += sendSlots(n);
            at += n;
        }
        return sent;
    }

    /** What {@link #sendEncoded} did: datagrams written into the slots, and how many of them left. */
    record Sent(int made, int sent) {
    }

    /**
     * Sends the datagrams {@code encoder} writes straight into the send slots ({@link WireCodec.Slots}: no array per
     * datagram, no copy into the slot), a batch whenever the slots are full and at the end.
     */
    synchronized Sent sendEncoded(Consumer<WireCodec.Slots> encoder) {
        Direct d = new Direct();
        encoder.accept(d);
        d.flush();
        return new Sent(d.made, d.sent);
    }

    /** The send slots as {@link WireCodec.Slots}, filled in order. */
    private final class Direct implements WireCodec.Slots {
        int n;
        int made;
        int sent;

        @Override
        public MemorySegment room(int udpLen) {
            if (udpLen > MAX_DATAGRAM) {
                throw new IllegalArgumentException("a datagram of " + udpLen + " bytes over " + MAX_DATAGRAM);
            }
            if (n == BATCH) {
                flush();
            }
            return tx.data.asSlice((long) n * MAX_DATAGRAM, udpLen);
        }

        @Override
        public void filled(byte[] head, MemorySegment udp) {
            tx.filled(n++, head, (int) udp.byteSize());
            made++;
        }

        void flush() {
            if (n > 0 && !shut) {
                sent += sendSlots(n);
            }
            n = 0;
        }
    }

    /** Sends the {@code n} datagrams in the slots; how many left. */
    private int sendSlots(int n) {
        int sent = 0;
        int first = 0;
        while (first < n && !shut) {
            int runs = runs(first, n);
            int done = 0;
            while (done < runs && !shut) {
                int r;
                try {
                    r = (int) Libc.SENDMMSG.invokeExact(tx.state, fd, tx.msgs.asSlice((long) done * MMSGHDR),
                            runs - done, 0);
                } catch (Throwable t) {
                    throw Libc.nativeFailure("rxe: sendmmsg failed to run", t);
                }
                if (r > 0) {
                    for (int k = done; k < done + r; k++) {
                        sent += tx.runCount[k];
                        if (tx.runCount[k] > 1) {
                            gsoRuns.incrementAndGet();
                        }
                    }
                    done += r;
                    continue;
                }
                int e = Libc.errno(tx.state);
                if (e == Libc.EINTR) {
                    continue;
                }
                if (tx.runCount[done] > 1 && (e == Libc.EINVAL || e == Libc.EIO || e == Libc.EMSGSIZE)) {
                    // udp_send_skb refuses GSO on this path (a segment over the device MTU, no checksum offload)
                    LOG.info("rxe: UDP GSO from {} refused ({}); sending datagram by datagram from now on", address,
                            Libc.strerror(e));
                    gso = false;
                    break; // the rest is grouped again, without GSO
                }
                LOG.warn("rxe: sendmmsg from {} failed: {}; {} datagram(s) lost", address, Libc.strerror(e),
                        tx.runCount[done]);
                done++; // the run that failed is lost, the next ones go
            }
            first = done < runs ? tx.runFirst[done] : n;
        }
        return sent;
    }

    /**
     * Groups slots {@code [first, n)} into message headers: a run of datagrams to one destination, each as long as
     * the first but the last, which may be shorter, leaves as one GSO send; returns how many headers.
     */
    private int runs(int first, int n) {
        int runs = 0;
        for (int i = first; i < n; ) {
            int size = tx.length(i);
            int j = i + 1;
            if (gso) {
                long bytes = size;
                while (j < n && j - i < GSO_MAX_SEGMENTS && tx.destination(i) == tx.destination(j)) {
                    int next = tx.length(j);
                    if (next > size || bytes + next > GSO_MAX_BYTES) {
                        break;
                    }
                    bytes += next;
                    j++;
                    if (next < size) {
                        break; // a shorter one ends the run
                    }
                }
            }
            tx.run(runs++, i, j - i, size);
            i = j;
        }
        return runs;
    }

    @Override
    public int receive(Receiver r) {
        while (!shut) {
            int n;
            try {
                n = (int) Libc.RECVMMSG.invokeExact(rx.state, fd, rx.msgs, RX_SLOTS, MSG_WAITFORONE,
                        MemorySegment.NULL);
            } catch (Throwable t) {
                throw Libc.nativeFailure("rxe: recvmmsg failed to run", t);
            }
            if (shut) {
                return -1;
            }
            if (n < 0) {
                int e = Libc.errno(rx.state);
                if (e != Libc.EINTR) {
                    LOG.error("rxe: recvmmsg on {} failed: {}", address, Libc.strerror(e));
                }
                continue;
            }
            int datagrams = 0;
            for (int k = 0; k < n; k++) {
                datagrams += deliver(k, r);
            }
            rx.reset(n);
            return datagrams;
        }
        return -1;
    }

    /** Hands the datagram of message {@code k} to {@code r}, or each of its GRO run; returns how many. */
    private int deliver(int k, Receiver r) {
        MemorySegment m = rx.msgs.asSlice((long) k * MMSGHDR, MMSGHDR);
        int len = m.get(ValueLayout.JAVA_INT, MSG_LEN);
        boolean truncated = (m.get(ValueLayout.JAVA_INT, MSG_FLAGS) & MSG_TRUNC) != 0;
        long name = (long) k * SOCKADDR_IN;
        boolean v4 = m.get(ValueLayout.JAVA_INT, MSG_NAMELEN) == SOCKADDR_IN
                && rx.names.get(ValueLayout.JAVA_SHORT, name) == AF_INET;
        int ip = rx.names.get(BE_INT, name + 4);
        int port = rx.names.get(BE_SHORT, name + 2) & 0xffff;
        int segment = rx.groSegment(k);
        int step = segment > 0 && segment < len ? segment : len;
        if (step < len) {
            groRuns.incrementAndGet();
        }
        long slot = (long) k * RX_SLOT;
        int count = 0;
        int off = 0;
        do {
            int one = Math.min(step, len - off);
            r.datagram(rx.data.asSlice(slot + off, Math.min(one, MAX_DATAGRAM)), ip, port,
                    truncated || !v4 || one > MAX_DATAGRAM);
            count++;
            off += one;
        } while (off < len);
        return count;
    }

    @Override
    public void shutdown() {
        shut = true;
        synchronized (this) {
            if (closed) {
                return;
            }
            try {
                // wakes a recvmmsg waiting: the socket reads end of file (ENOTCONN is the answer of an unconnected
                // UDP socket, which inet_shutdown wakes all the same)
                int ignored = (int) Libc.SHUTDOWN.invokeExact(tx.state, fd, SHUT_RDWR);
            } catch (Throwable t) {
                throw Libc.nativeFailure("rxe: shutdown failed to run", t);
            }
        }
    }

    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        shut = true;
        closed = true;
        try {
            if ((int) Libc.CLOSE.invokeExact(tx.state, fd) != 0) {
                LOG.error("rxe: close of the UDP socket of {} failed: {}", address,
                        Libc.strerror(Libc.errno(tx.state)));
            }
        } catch (Throwable t) {
            throw Libc.nativeFailure("rxe: close failed to run", t);
        } finally {
            arena.close();
        }
    }

    @Override
    public boolean batched() {
        return true;
    }

    /** Whether the socket receives GSO runs whole ({@code UDP_GRO} taken). */
    boolean gro() {
        return gro;
    }

    /** How many sends left as one GSO run of several datagrams. */
    long gsoRuns() {
        return gsoRuns.get();
    }

    /** How many receives came as one GRO run of several datagrams. */
    long groRuns() {
        return groRuns.get();
    }
}
