package dev.dmaplane.perftest;

import java.net.InetAddress;

/**
 * perftest's out-of-band channel ({@code perftest_communication.c}): how the two ends of a run between processes
 * tell each other their addresses, QPNs and rkeys and keep in step, one text line at a time. {@link TcpOob} is
 * perftest's default, a TCP connection on {@code -p}; it carries the exchange with {@code -R} as well (perftest
 * moves it onto the rdma_cm there; an Oob over the rdma_cm could be another).
 */
interface Oob extends AutoCloseable {
    /** Sends one line (no line break in it). */
    void send(String line);

    /** The next line from the other end; null once the other end closed the channel. */
    String receive();

    /** The address this end has on the channel: the default for its RoCEv2 address. */
    InetAddress localAddress();

    @Override
    void close();
}
