package dev.dmaplane.driver.softroce;

import dev.dmaplane.errno.ErrnoException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.net.Inet4Address;

/**
 * The datagram socket of a {@link UdpTransport} ({@code rxe_net.c}'s UDP tunnel socket): bound to one IPv4 address
 * and port {@value WireCodec#ROCE_PORT}, it sends a burst of datagrams and receives what is waiting, in as few system
 * calls as the platform allows: {@link MmsgSocket} ({@code sendmmsg}/{@code recvmmsg} through the foreign-function
 * API) on Linux, {@link ChannelSocket} (a {@code DatagramChannel}, one datagram per call) elsewhere or when
 * {@value #NATIVE} is {@code false}.
 */
interface UdpSocket extends AutoCloseable {
    /** The system property that turns the native batched socket off ({@code false}), read by the driver. */
    String NATIVE = "dmaplane.softroce.udp.native";
    /** Socket buffers: a 1 MiB message at MTU 1024 is about 3 MiB of kernel buffers on the loopback. */
    int SOCKET_BUFFER = 8 << 20;
    /** Datagrams a batch holds: one engine burst. */
    int BATCH = Engine.BURST;
    /**
     * The largest datagram a receive keeps whole (UDP payload): the headers and a 4096-byte payload fit; a longer
     * one arrives truncated and is refused as malformed.
     */
    int MAX_DATAGRAM = 8192;

    /** Receives each datagram of a batch. */
    @FunctionalInterface
    interface Receiver {
        /**
         * The UDP payload of a datagram, {@code udp}, valid only during the call (the socket's receive buffer), sent
         * from {@code srcIp} (IPv4, as an int in network order) port {@code srcPort}; {@code truncated} when it was
         * longer than {@link #MAX_DATAGRAM} and only its start is there.
         */
        void datagram(MemorySegment udp, int srcIp, int srcPort, boolean truncated);
    }

    /**
     * Sends {@code d[i][WireCodec.BTH_AT, len[i])} for each {@code i < count}, each to the IPv4 destination of its IP
     * header ({@code d[i][16, 20)}) at port {@value WireCodec#ROCE_PORT}, in order; returns how many were sent (the
     * others are lost: a failed send, or the socket closed).
     */
    int send(byte[][] d, int[] len, int count);

    /**
     * Waits for a datagram, then takes the others already waiting (up to {@link #BATCH}), handing each to {@code r} in
     * order of arrival; returns how many, or -1 once the socket is shut down.
     */
    int receive(Receiver r);

    /** Wakes a receive waiting and makes every later one return -1; sends are lost from now on. */
    void shutdown();

    /** Releases the socket; after {@link #shutdown} and once no receive runs. */
    @Override
    void close();

    /** Whether sends and receives are batched (the native socket). */
    boolean batched();

    /**
     * Binds {@code address}:{@value WireCodec#ROCE_PORT}: the native socket where it is available and
     * {@code nativeSocket} asks for it, otherwise a channel.
     *
     * @throws ErrnoException {@code EADDRINUSE} or {@code EADDRNOTAVAIL} when it cannot be bound there, {@code EIO}
     *                        otherwise
     */
    static UdpSocket bind(Inet4Address address, boolean nativeSocket) {
        if (MmsgSocket.AVAILABLE && nativeSocket) {
            return MmsgSocket.bind(address);
        }
        Holder.LOG.debug("rxe: UDP on {} through a DatagramChannel (native batching {})", address,
                MmsgSocket.AVAILABLE ? "turned off" : "not available here");
        return ChannelSocket.bind(address);
    }

    /** The logger of the interface's static method. */
    final class Holder {
        static final Logger LOG = LoggerFactory.getLogger(UdpSocket.class);

        private Holder() {
        }
    }
}
