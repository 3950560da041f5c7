package dev.dmaplane.driver.siw;

import dev.dmaplane.rdma.spi.IwCmHandler;
import dev.dmaplane.rdma.spi.IwListen;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.time.Duration;

/**
 * A listening endpoint ({@code siw_create_listen}, {@code siw_accept_newconn}): a TCP server socket whose thread
 * accepts connections and gives each a passive {@link Cep}, which reads the MPA request and reports it.
 */
final class Listener implements IwListen {
    private static final Logger LOG = LoggerFactory.getLogger(Listener.class);
    private static final Duration JOIN = Duration.ofSeconds(10);

    private final SiwProvider dev;
    private final ServerSocketChannel server;
    private final InetSocketAddress local;
    private final IwCmHandler handler;
    private final Thread thread;

    Listener(SiwProvider dev, ServerSocketChannel server, IwCmHandler handler) throws IOException {
        this.dev = dev;
        this.server = server;
        this.local = (InetSocketAddress) server.getLocalAddress();
        this.handler = handler;
        this.thread = Thread.ofPlatform().name("siw-listen-" + dev.name() + "-" + local.getPort()).daemon()
                .unstarted(this::run);
    }

    void start() {
        thread.start();
    }

    @Override
    public InetSocketAddress local() {
        return local;
    }

    private void run() {
        while (true) {
            SocketChannel ch;
            try {
                ch = server.accept();
            } catch (ClosedChannelException e) {
                return;
            } catch (IOException e) {
                LOG.error("siw: accept on {} failed", local, e);
                return;
            }
            try {
                Cep c = Cep.accepted(dev, ch, handler);
                if (dev.cm.track(c)) {
                    c.start();
                }
            } catch (IOException e) {
                LOG.warn("siw: a connection to {} was lost before its MPA request", local, e);
                closeQuietly(ch);
            }
        }
    }

    private void closeQuietly(SocketChannel ch) {
        try {
            ch.close();
        } catch (IOException e) {
            LOG.error("siw: closing a connection to {} failed", local, e);
        }
    }

    /** Stops accepting and waits for the thread; connections it accepted live on. Idempotent. */
    @Override
    public void close() {
        try {
            server.close();
        } catch (IOException e) {
            LOG.error("siw: closing the listener on {} failed", local, e);
        }
        dev.cm.forget(this);
        if (thread.isAlive() && thread != Thread.currentThread()) {
            try {
                if (!thread.join(JOIN)) {
                    LOG.error("siw: the listener thread of {} did not end within {}", local, JOIN);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
