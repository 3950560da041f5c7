package dev.dmaplane.rdma.spi;

import org.osgi.annotation.versioning.ConsumerType;

import java.net.InetSocketAddress;

/** A listening endpoint of an iWARP device ({@code create_listen} / {@code destroy_listen}). */
@ConsumerType
public interface IwListen extends AutoCloseable {
    /** The address listened on (the port chosen by the system when 0 was asked). */
    InetSocketAddress local();

    /** {@code destroy_listen}: stops accepting; requests not answered yet are rejected. Idempotent. */
    @Override
    void close();
}
