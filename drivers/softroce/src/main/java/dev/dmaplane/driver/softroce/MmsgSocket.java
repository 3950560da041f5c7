package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout.PathElement;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.net.Inet4Address;
import java.nio.ByteOrder;
import java.util.Locale;

/**
 * A {@link UdpSocket} made with libc's {@code socket}/{@code bind} and driven by {@code sendmmsg(2)} and
 * {@code recvmmsg(2)} through the foreign-function API: a burst leaves in one system call, and a receive takes every
 * datagram waiting (up to {@link #BATCH}) in one ({@code MSG_WAITFORONE}: it waits for the first only). Linux on
 * x86-64 or AArch64 (the {@code struct mmsghdr} layout and the constants below are theirs).
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
    private static final int MSG_WAITFORONE = 0x10000;
    private static final int EINTR = 4;
    private static final int EADDRINUSE = 98;
    private static final int EADDRNOTAVAIL = 99;
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
    private static final int MSG_FLAGS = 48;
    private static final int MSG_LEN = 56;
    private static final ValueLayout.OfShort BE_SHORT =
            ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfInt BE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    /** Whether this platform has the calls and the layout used here. */
    static final boolean AVAILABLE;
    private static final StructLayout CAPTURE;
    private static final VarHandle ERRNO;
    private static final MethodHandle SOCKET;
    private static final MethodHandle SETSOCKOPT;
    private static final MethodHandle BIND;
    private static final MethodHandle SENDMMSG;
    private static final MethodHandle RECVMMSG;
    private static final MethodHandle SHUTDOWN;
    private static final MethodHandle CLOSE;
    private static final MethodHandle STRERROR;

    static {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "");
        boolean platform = os.startsWith("linux") && (arch.equals("amd64") || arch.equals("x86_64")
                || arch.equals("aarch64"));
        MethodHandle[] h = new MethodHandle[9];
        StructLayout capture = null;
        VarHandle errno = null;
        boolean ok = false;
        if (platform) {
            try {
                Linker linker = Linker.nativeLinker();
                SymbolLookup libc = linker.defaultLookup();
                capture = Linker.Option.captureStateLayout();
                errno = capture.varHandle(PathElement.groupElement("errno"));
                Linker.Option err = Linker.Option.captureCallState("errno");
                ValueLayout i = ValueLayout.JAVA_INT;
                ValueLayout p = ValueLayout.ADDRESS;
                h[0] = linker.downcallHandle(libc.find("socket").orElseThrow(), FunctionDescriptor.of(i, i, i, i), err);
                h[1] = linker.downcallHandle(libc.find("setsockopt").orElseThrow(),
                        FunctionDescriptor.of(i, i, i, i, p, i), err);
                h[2] = linker.downcallHandle(libc.find("bind").orElseThrow(), FunctionDescriptor.of(i, i, p, i), err);
                h[3] = linker.downcallHandle(libc.find("sendmmsg").orElseThrow(),
                        FunctionDescriptor.of(i, i, p, i, i), err);
                h[4] = linker.downcallHandle(libc.find("recvmmsg").orElseThrow(),
                        FunctionDescriptor.of(i, i, p, i, i, p), err);
                h[5] = linker.downcallHandle(libc.find("shutdown").orElseThrow(), FunctionDescriptor.of(i, i, i), err);
                h[6] = linker.downcallHandle(libc.find("close").orElseThrow(), FunctionDescriptor.of(i, i), err);
                h[7] = linker.downcallHandle(libc.find("strerror").orElseThrow(), FunctionDescriptor.of(p, i));
                ok = true;
            } catch (RuntimeException e) {
                // no native access (--enable-native-access missing) or no such symbol: the channel path serves
                LoggerFactory.getLogger(MmsgSocket.class).warn("rxe: no sendmmsg/recvmmsg through the FFM API, "
                        + "UDP sends and receives one datagram per call", e);
            }
        }
        AVAILABLE = ok;
        CAPTURE = capture;
        ERRNO = errno;
        SOCKET = h[0];
        SETSOCKOPT = h[1];
        BIND = h[2];
        SENDMMSG = h[3];
        RECVMMSG = h[4];
        SHUTDOWN = h[5];
        CLOSE = h[6];
        STRERROR = h[7];
    }

    private final Inet4Address address;
    private final int fd;
    private final Arena arena = Arena.ofShared();
    private final Tx tx = new Tx(arena);
    private final Rx rx = new Rx(arena);
    private volatile boolean shut;
    private boolean closed;

    /** The send side's vectors, used under the socket's lock. */
    private static final class Tx {
        final MemorySegment state;
        final MemorySegment msgs;
        final MemorySegment iovs;
        final MemorySegment names;
        final MemorySegment data;

        Tx(Arena a) {
            state = a.allocate(CAPTURE);
            msgs = a.allocate((long) MMSGHDR * BATCH, 8);
            iovs = a.allocate((long) IOVEC * BATCH, 8);
            names = a.allocate((long) SOCKADDR_IN * BATCH, 8);
            data = a.allocate((long) MAX_DATAGRAM * BATCH, 64);
            for (int k = 0; k < BATCH; k++) {
                MemorySegment m = msgs.asSlice((long) k * MMSGHDR, MMSGHDR);
                m.set(ValueLayout.ADDRESS, MSG_NAME, names.asSlice((long) k * SOCKADDR_IN, SOCKADDR_IN));
                m.set(ValueLayout.JAVA_INT, MSG_NAMELEN, SOCKADDR_IN);
                m.set(ValueLayout.ADDRESS, MSG_IOV, iovs.asSlice((long) k * IOVEC, IOVEC));
                m.set(ValueLayout.JAVA_LONG, MSG_IOVLEN, 1);
                iovs.set(ValueLayout.ADDRESS, (long) k * IOVEC, data.asSlice((long) k * MAX_DATAGRAM, MAX_DATAGRAM));
                MemorySegment n = names.asSlice((long) k * SOCKADDR_IN, SOCKADDR_IN);
                n.set(ValueLayout.JAVA_SHORT, 0, (short) AF_INET);
                n.set(BE_SHORT, 2, (short) WireCodec.ROCE_PORT);
            }
        }
    }

    /** The receive side's vectors and the heap buffer a datagram is handed in, used by the receiving thread. */
    private static final class Rx {
        final MemorySegment state;
        final MemorySegment msgs;
        final MemorySegment names;
        final MemorySegment data;
        final byte[] buf = new byte[WireCodec.BTH_AT + MAX_DATAGRAM];

        Rx(Arena a) {
            state = a.allocate(CAPTURE);
            msgs = a.allocate((long) MMSGHDR * BATCH, 8);
            MemorySegment iovs = a.allocate((long) IOVEC * BATCH, 8);
            names = a.allocate((long) SOCKADDR_IN * BATCH, 8);
            data = a.allocate((long) MAX_DATAGRAM * BATCH, 64);
            for (int k = 0; k < BATCH; k++) {
                MemorySegment m = msgs.asSlice((long) k * MMSGHDR, MMSGHDR);
                m.set(ValueLayout.ADDRESS, MSG_NAME, names.asSlice((long) k * SOCKADDR_IN, SOCKADDR_IN));
                m.set(ValueLayout.JAVA_INT, MSG_NAMELEN, SOCKADDR_IN);
                m.set(ValueLayout.ADDRESS, MSG_IOV, iovs.asSlice((long) k * IOVEC, IOVEC));
                m.set(ValueLayout.JAVA_LONG, MSG_IOVLEN, 1);
                iovs.set(ValueLayout.ADDRESS, (long) k * IOVEC, data.asSlice((long) k * MAX_DATAGRAM, MAX_DATAGRAM));
                iovs.set(ValueLayout.JAVA_LONG, (long) k * IOVEC + 8, MAX_DATAGRAM);
            }
        }
    }

    private MmsgSocket(Inet4Address address, int fd) {
        this.address = address;
        this.fd = fd;
    }

    static MmsgSocket bind(Inet4Address address) {
        if (!AVAILABLE) {
            throw new ErrnoException(Errno.EOPNOTSUPP, "rxe: no sendmmsg/recvmmsg on this platform for " + address);
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = a.allocate(CAPTURE);
            int fd = (int) SOCKET.invokeExact(st, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                throw new ErrnoException(Errno.EIO, "rxe: socket(AF_INET, SOCK_DGRAM) for " + address + ": "
                        + strerror(errno(st)));
            }
            try {
                MemorySegment v = a.allocate(ValueLayout.JAVA_INT);
                v.set(ValueLayout.JAVA_INT, 0, SOCKET_BUFFER);
                for (int opt : new int[]{SO_RCVBUF, SO_SNDBUF}) {
                    if ((int) SETSOCKOPT.invokeExact(st, fd, SOL_SOCKET, opt, v, 4) != 0) {
                        throw new ErrnoException(Errno.EIO, "rxe: setsockopt(SOL_SOCKET, " + opt + ", "
                                + SOCKET_BUFFER + ") on " + address + ": " + strerror(errno(st)));
                    }
                }
                MemorySegment sin = a.allocate(SOCKADDR_IN, 8);
                sin.set(ValueLayout.JAVA_SHORT, 0, (short) AF_INET);
                sin.set(BE_SHORT, 2, (short) WireCodec.ROCE_PORT);
                sin.asSlice(4, 4).copyFrom(MemorySegment.ofArray(address.getAddress()));
                if ((int) BIND.invokeExact(st, fd, sin, SOCKADDR_IN) != 0) {
                    int e = errno(st);
                    Errno code = e == EADDRINUSE ? Errno.EADDRINUSE : e == EADDRNOTAVAIL ? Errno.EADDRNOTAVAIL
                            : Errno.EIO;
                    throw new ErrnoException(code, "rxe: cannot bind " + address.getHostAddress() + ":"
                            + WireCodec.ROCE_PORT + ": " + strerror(e));
                }
                return new MmsgSocket(address, fd);
            } catch (RuntimeException | Error e) {
                int ignored = (int) CLOSE.invokeExact(st, fd);
                throw e;
            }
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw nativeFailure("rxe: native socket call failed", t);
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
                tx.iovs.set(ValueLayout.JAVA_LONG, (long) k * IOVEC + 8, udp);
                // the destination as the IP header has it, in network order
                MemorySegment.copy(b, 16, tx.names, ValueLayout.JAVA_BYTE, (long) k * SOCKADDR_IN + 4, 4);
            }
            int done = 0;
            while (done < n && !shut) {
                int r;
                try {
                    r = (int) SENDMMSG.invokeExact(tx.state, fd, tx.msgs.asSlice((long) done * MMSGHDR), n - done, 0);
                } catch (Throwable t) {
                    throw nativeFailure("rxe: sendmmsg failed to run", t);
                }
                if (r > 0) {
                    done += r;
                    sent += r;
                } else if (errno(tx.state) != EINTR) {
                    LOG.warn("rxe: sendmmsg from {} failed: {}; a datagram is lost", address,
                            strerror(errno(tx.state)));
                    done++; // the one that failed is lost, the next ones go
                }
            }
            at += n;
        }
        return sent;
    }

    @Override
    public int receive(Receiver r) {
        while (!shut) {
            int n;
            try {
                n = (int) RECVMMSG.invokeExact(rx.state, fd, rx.msgs, BATCH, MSG_WAITFORONE, MemorySegment.NULL);
            } catch (Throwable t) {
                throw nativeFailure("rxe: recvmmsg failed to run", t);
            }
            if (shut) {
                return -1;
            }
            if (n < 0) {
                int e = errno(rx.state);
                if (e != EINTR) {
                    LOG.error("rxe: recvmmsg on {} failed: {}", address, strerror(e));
                }
                continue;
            }
            for (int k = 0; k < n; k++) {
                MemorySegment m = rx.msgs.asSlice((long) k * MMSGHDR, MMSGHDR);
                int len = m.get(ValueLayout.JAVA_INT, MSG_LEN);
                boolean truncated = (m.get(ValueLayout.JAVA_INT, MSG_FLAGS) & MSG_TRUNC) != 0;
                int kept = Math.min(len, MAX_DATAGRAM);
                MemorySegment.copy(rx.data, ValueLayout.JAVA_BYTE, (long) k * MAX_DATAGRAM, rx.buf, WireCodec.BTH_AT,
                        kept);
                long name = (long) k * SOCKADDR_IN;
                boolean v4 = m.get(ValueLayout.JAVA_INT, MSG_NAMELEN) == SOCKADDR_IN
                        && rx.names.get(ValueLayout.JAVA_SHORT, name) == AF_INET;
                r.datagram(rx.buf, kept, rx.names.get(BE_INT, name + 4), rx.names.get(BE_SHORT, name + 2) & 0xffff,
                        truncated || !v4);
            }
            resetNameLengths(n);
            return n;
        }
        return -1;
    }

    /** recvmmsg wrote each address's length over msg_namelen: the next call offers the whole room again. */
    private void resetNameLengths(int n) {
        for (int k = 0; k < n; k++) {
            rx.msgs.set(ValueLayout.JAVA_INT, (long) k * MMSGHDR + MSG_NAMELEN, SOCKADDR_IN);
            rx.msgs.set(ValueLayout.JAVA_INT, (long) k * MMSGHDR + MSG_FLAGS, 0);
        }
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
                int ignored = (int) SHUTDOWN.invokeExact(tx.state, fd, SHUT_RDWR);
            } catch (Throwable t) {
                throw nativeFailure("rxe: shutdown failed to run", t);
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
            if ((int) CLOSE.invokeExact(tx.state, fd) != 0) {
                LOG.error("rxe: close of the UDP socket of {} failed: {}", address, strerror(errno(tx.state)));
            }
        } catch (Throwable t) {
            throw nativeFailure("rxe: close failed to run", t);
        } finally {
            arena.close();
        }
    }

    @Override
    public boolean batched() {
        return true;
    }

    private static int errno(MemorySegment state) {
        return (int) ERRNO.get(state, 0L);
    }

    private static String strerror(int errno) {
        try {
            MemorySegment s = (MemorySegment) STRERROR.invokeExact(errno);
            return s.reinterpret(256).getString(0) + " (errno " + errno + ")";
        } catch (Throwable t) {
            throw nativeFailure("rxe: strerror failed to run", t);
        }
    }

    /** A native call that threw what no native call throws: logged with its stack and reported as EIO. */
    private static ErrnoException nativeFailure(String what, Throwable t) {
        LOG.error("{}", what, t);
        return new ErrnoException(Errno.EIO, what + ": " + t, t);
    }
}
