package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.IwCm;
import dev.dmaplane.rdma.spi.IwCmHandler;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.spi.IwConnection;
import dev.dmaplane.rdma.spi.IwListen;
import dev.dmaplane.rdma.verbs.QpState;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.net.BindException;
import java.net.Inet4Address;
import java.net.InetSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A siw device's connection manager ({@code siw_cm.c}, the {@code iw_cm_verbs} the core calls:
 * {@code siw_create_listen}, {@code siw_connect}) and what it keeps of the device's connections: its listeners, its
 * endpoints ({@code sdev->cep_list}), a QP put on an endpoint ({@code siw_qp_id2obj}, {@code cep->qp}), and their
 * end when the device goes away. The MPA exchange itself is the endpoint's ({@link Cep}); the MPA revision and
 * peer-to-peer mode it follows are the device's ({@link SiwProvider#mpa}).
 */
final class SiwCm implements IwCm {
    private static final Logger LOG = LoggerFactory.getLogger(SiwCm.class);

    private final SiwProvider dev;
    private final Set<Cep> ceps = ConcurrentHashMap.newKeySet();
    private final Set<Listener> listeners = ConcurrentHashMap.newKeySet();
    private final AtomicInteger cepIds = new AtomicInteger();
    /** The device is going away: no listener or endpoint is taken on from now on. */
    private boolean stopping;

    SiwCm(SiwProvider dev) {
        this.dev = dev;
    }

    /**
     * Stops listening, closes every connection (their QPs go to ERR) and waits for their threads: no listener or
     * endpoint of the device stays.
     */
    void stop() {
        List<Listener> ls;
        List<Cep> cs;
        synchronized (this) {
            stopping = true;
            ls = new ArrayList<>(listeners);
            cs = new ArrayList<>(ceps);
        }
        for (Listener l : ls) {
            l.close();
        }
        for (Cep c : cs) {
            c.lost("device removed", false);
            c.join();
        }
    }

    /** A number for an endpoint's thread name. */
    int nextCepId() {
        return cepIds.incrementAndGet();
    }

    @Override
    public IwListen listen(InetSocketAddress local, int backlog, IwCmHandler handler) {
        ErrnoException.requireNonNull(handler, "siw: listen handler");
        if (local == null || !(local.getAddress() instanceof Inet4Address)) {
            throw new ErrnoException(Errno.EINVAL, "siw: listen needs an IPv4 address, not " + local);
        }
        if (backlog < 1) {
            throw new ErrnoException(Errno.EINVAL, "siw: listen backlog " + backlog + " is below 1");
        }
        ServerSocketChannel s = null;
        try {
            s = ServerSocketChannel.open();
            s.bind(local, backlog);
            Listener l = new Listener(dev, s, handler);
            synchronized (this) {
                if (stopping) {
                    s.close();
                    throw new ErrnoException(Errno.ENODEV, "siw: " + dev.name() + " is going away");
                }
                listeners.add(l);
            }
            l.start();
            return l;
        } catch (BindException e) {
            closeQuietly(s);
            boolean inUse = String.valueOf(e.getMessage()).contains("in use");
            throw new ErrnoException(inUse ? Errno.EADDRINUSE : Errno.EADDRNOTAVAIL, "siw: cannot listen on " + local
                    + ": " + e.getMessage(), e);
        } catch (IOException e) {
            closeQuietly(s);
            throw new ErrnoException(Errno.EIO, "siw: cannot listen on " + local + ": " + e.getMessage(), e);
        }
    }

    private static void closeQuietly(ServerSocketChannel s) {
        if (s == null) {
            return;
        }
        try {
            s.close();
        } catch (IOException x) {
            LOG.error("siw: closing a listener that failed to bind failed", x);
        }
    }

    @Override
    public IwConnection connect(int qpn, InetSocketAddress remote, IwConnParam param, IwCmHandler handler) {
        ErrnoException.requireNonNull(param, "siw: connect parameters");
        ErrnoException.requireNonNull(handler, "siw: connect handler");
        if (remote == null || !(remote.getAddress() instanceof Inet4Address)) {
            throw new ErrnoException(Errno.EINVAL, "siw: connect needs an IPv4 address, not " + remote);
        }
        int pd = param.privateData().length;
        if (dev.mpaRevision() == Mpa.REVISION_2 && pd > Mpa.MAX_PRIVATE_DATA - Mpa.V2_DATA) {
            throw new ErrnoException(Errno.EINVAL, "siw: connect private data of " + pd + " bytes exceeds "
                    + (Mpa.MAX_PRIVATE_DATA - Mpa.V2_DATA) + " under MPA v2 (its IRD/ORD take 4 of 512)");
        }
        if (param.ird() > dev.maxReadDepth() || param.ord() > dev.maxReadDepth()) {
            // siw_connect: depths beyond sdev->attrs.max_ird/max_ord are ENOMEM, before any socket exists
            throw new ErrnoException(Errno.ENOMEM, "siw: connect of qp " + qpn + " with ird " + param.ird() + ", ord "
                    + param.ord() + ": the device's max_ird and max_ord are " + dev.maxReadDepth());
        }
        Cep c;
        try {
            c = Cep.connecting(dev, null, remote, param, handler);
        } catch (IOException e) {
            throw new ErrnoException(Errno.EIO, "siw: no socket for qp " + qpn + ": " + e.getMessage(), e);
        }
        try {
            bindQp(qpn, c);
        } catch (ErrnoException e) {
            c.abandon("refused: " + e.getMessage());
            throw e;
        }
        try {
            c.bindConnect();
        } catch (IOException e) {
            // siw_connect returns kernel_bindconnect's error: no event, the QP as it was
            c.abandon("connect failed: " + e.getMessage());
            throw new ErrnoException(Cep.connectErrno(e), "siw: connect of qp " + qpn + " to " + remote + " failed: "
                    + e.getMessage(), e);
        }
        if (track(c)) {
            c.start();
        }
        return c;
    }

    /** Puts QP {@code qpn} on connection {@code c}: an RC QP of this device in INIT or RTR without one. */
    SiwQp bindQp(int qpn, Cep c) {
        SiwQp q = dev.qp(qpn);
        if (q == null) {
            throw new ErrnoException(Errno.EINVAL, "siw: no qp " + qpn + " on " + dev.name());
        }
        synchronized (q) {
            QpState s = q.hw.state();
            if (s != QpState.INIT && s != QpState.RTR) {
                throw new ErrnoException(Errno.EINVAL, "siw: qp " + qpn + " is in " + s + ": a connection needs INIT "
                        + "or RTR");
            }
            if (q.cep != null) {
                throw new ErrnoException(Errno.EINVAL, "siw: qp " + qpn + " has a connection already");
            }
            q.fresh();
            q.cep = c;
            c.qp = q;
        }
        return q;
    }

    void unbindQp(SiwQp q, Cep c) {
        q.detach(c);
    }

    /** Tracks a new connection; false (and the connection closed) when the device is going away. */
    boolean track(Cep c) {
        synchronized (this) {
            if (!stopping) {
                ceps.add(c);
                return true;
            }
        }
        c.lost("device removed", false);
        return false;
    }

    void forget(Cep c) {
        ceps.remove(c);
    }

    void forget(Listener l) {
        listeners.remove(l);
    }
}
