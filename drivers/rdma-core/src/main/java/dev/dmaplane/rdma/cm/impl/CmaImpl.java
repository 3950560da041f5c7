package dev.dmaplane.rdma.cm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmIdInfo;
import dev.dmaplane.rdma.cm.EventChannel;
import dev.dmaplane.rdma.cm.PortSpace;
import dev.dmaplane.rdma.cm.RdmaCm;
import dev.dmaplane.rdma.cm.RejectReason;
import dev.dmaplane.rdma.cm.impl.CmMessages.Req;
import dev.dmaplane.rdma.impl.CoreImpl;
import dev.dmaplane.rdma.spi.IwCm;
import dev.dmaplane.rdma.spi.IwCmEvent;
import dev.dmaplane.rdma.spi.IwCmHandler;
import dev.dmaplane.rdma.spi.OrderedWorkqueue;
import dev.dmaplane.rdma.verbs.GidEntry;
import dev.dmaplane.rdma.verbs.GidType;
import dev.dmaplane.rdma.verbs.NodeType;
import dev.dmaplane.rdma.verbs.QueuePair;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.RejectedExecutionException;
import java.util.function.Consumer;

/**
 * The rdma_cm of one machine ({@code drivers/infiniband/core/cma.c} with {@code ucma.c}): event channels, ids, the
 * port spaces' bound ports, address and route resolution on RoCE, and the {@link IbCm} under the ids' connections.
 * One lock (this object's {@link #lock}) guards every id, the IB CM and the bindings; MAD handlers and timers take
 * it, and no provider or MAD layer lock is held while it is taken (they never call back into the CM).
 */
public final class CmaImpl implements RdmaCm, IbCm.Listeners, CoreImpl.Client {
    private static final Logger LOG = LoggerFactory.getLogger(CmaImpl.class);
    /** {@code CMA_CM_RESPONSE_TIMEOUT}. */
    static final int CM_RESPONSE_TIMEOUT = 20;
    /** {@code CMA_MAX_CM_RETRIES}. */
    static final int MAX_CM_RETRIES = 15;
    /** {@code CMA_IBOE_PACKET_LIFETIME}. */
    static final int IBOE_PACKET_LIFETIME = 16;
    /** rxe's {@code RXE_LOCAL_CA_ACK_DELAY}: the CA ack delay {@code cm_ack_timeout} adds to. */
    static final int CA_ACK_DELAY = 15;
    /** The first and last ephemeral port ({@code inet_get_local_port_range}'s default). */
    static final int EPHEMERAL_LO = 32768;
    static final int EPHEMERAL_HI = 60999;

    final Object lock = new Object();
    final RdmaCore core;
    private final CoreImpl devices;
    final IbCm cm;
    /** The ib_cm thread's queue: MAD handlers, timers and the iWARP driver's events. */
    final OrderedWorkqueue timers;
    final List<ChannelImpl> channels = new CopyOnWriteArrayList<>();
    final List<IdImpl> ids = new ArrayList<>();
    private int responseTimeout = CM_RESPONSE_TIMEOUT;
    private int maxRetries = MAX_CM_RETRIES;
    private int nextPort = EPHEMERAL_LO;
    private boolean closed;

    public CmaImpl(RdmaCore core, CoreImpl devices, int firstCommId) {
        this.core = core;
        this.devices = devices;
        this.timers = OrderedWorkqueue.alloc("ib_cm");
        this.cm = new IbCm(lock, this, timers, firstCommId);
    }

    /**
     * {@code cma_add_one} with {@code cm_add_one}: the CM's MAD agent on each port of a new device, which takes REQs
     * from then on; on an iWARP device, a listener for every id listening on the wildcard address
     * ({@code cma_listen_on_dev}).
     */
    @Override
    public void add(RdmaDevice dev) {
        synchronized (lock) {
            if (closed) {
                return;
            }
            if (isIw(dev)) {
                for (IdImpl id : ids) {
                    if (id.state == IdImpl.State.LISTEN && id.dev == null) {
                        try {
                            id.iw().listenOn(dev);
                        } catch (ErrnoException e) {
                            LOG.warn("{}: the wildcard listener on port {} cannot listen here: {}", dev.name(),
                                    id.src.getPort(), e.getMessage());
                        }
                    }
                }
                return;
            }
            for (int p = 1; p <= dev.portCount(); p++) {
                try {
                    cm.addPort(dev, p);
                } catch (ErrnoException e) {
                    LOG.info("{} port {} has no CM: {}", dev.name(), p, e.getMessage()); // a device without GSI
                }
            }
        }
    }

    /** {@code cma_remove_one}: DEVICE_REMOVAL to every id on the device, its connections dropped. */
    @Override
    public void remove(RdmaDevice dev) {
        synchronized (lock) {
            for (IdImpl id : new ArrayList<>(ids)) {
                if (id.dev == dev && !id.removed) {
                    id.deviceRemoved();
                } else if (id.dev == null && id.iw != null) {
                    id.iw.closeListens(dev);
                }
            }
            cm.removeDevice(dev);
        }
    }

    /** The core closes: every channel closes, the CM thread ends ({@code destroy_workqueue}; EINTR if interrupted). */
    public void close() {
        synchronized (lock) {
            closed = true;
            lock.notifyAll(); // an iw_cm waiter for a connect's outcome, which no event brings any more
        }
        for (ChannelImpl c : channels) {
            c.close();
        }
        timers.destroy(Duration.ofSeconds(10));
    }

    @Override
    public EventChannel createEventChannel(AddressSpace process) {
        if (process == null || process.isClosed()) {
            throw new ErrnoException(Errno.EINVAL, "rdma_create_event_channel needs a live address space");
        }
        synchronized (lock) {
            if (closed) {
                throw new ErrnoException(Errno.ENODEV, "the RDMA core is closed");
            }
            ChannelImpl c = new ChannelImpl(this, process);
            channels.add(c);
            return c;
        }
    }

    @Override
    public List<CmIdInfo> ids() {
        synchronized (lock) {
            return ids.stream().map(IdImpl::info).toList();
        }
    }

    @Override
    public void setCmResponseTimeout(int ibaTime) {
        if (ibaTime < 0 || ibaTime > 31) {
            throw new ErrnoException(Errno.EINVAL, "CM response timeout " + ibaTime + " outside 0..31");
        }
        synchronized (lock) {
            responseTimeout = ibaTime;
        }
    }

    @Override
    public void setMaxCmRetries(int retries) {
        if (retries < 0 || retries > 15) {
            throw new ErrnoException(Errno.EINVAL, "max CM retries " + retries + " outside 0..15");
        }
        synchronized (lock) {
            maxRetries = retries;
        }
    }

    /** Whether the rdma_cm closed. Under {@link #lock}. */
    boolean isClosed() {
        return closed;
    }

    /** Whether the caller is the rdma_cm's thread, the one that handles events: it must never wait for one. */
    boolean onEventThread() {
        return timers.onWorker();
    }

    /** Whether {@code d} is an iWARP RNIC, whose connections are the {@link IwCm}'s ({@code rdma_cap_iw_cm}). */
    static boolean isIw(RdmaDevice d) {
        return d.nodeType().transport() == NodeType.Transport.IWARP;
    }

    /** The connection manager of iWARP device {@code d}. */
    IwCm iwCm(RdmaDevice d) {
        return devices.iwCm(d).orElseThrow(() -> new ErrnoException(Errno.EOPNOTSUPP, d.name()
                + " is an iWARP device without a connection manager"));
    }

    /** The QP numbered {@code qpn} on iWARP device {@code d} ({@code iw_get_qp}), or null. */
    QueuePair iwQp(RdmaDevice d, int qpn) {
        return devices.iwQp(d, qpn).orElse(null);
    }

    /**
     * A handler for the driver's iWARP events that runs {@code to} on the rdma_cm's thread under its lock (as iwcm.c
     * queues each event to its work queue, {@code cm_event_handler}), in the order the driver reported them.
     */
    IwCmHandler iwHandler(Consumer<IwCmEvent> to) {
        return e -> {
            try {
                timers.execute(() -> {
                    synchronized (lock) {
                        to.accept(e);
                    }
                });
            } catch (RejectedExecutionException x) {
                LOG.debug("iWARP {} from {} after the rdma_cm closed: dropped", e.type(), e.remote(), x);
            }
        };
    }

    /** {@code cma_listen_on_all} or {@code cma_iw_listen}: listeners for {@code id} on its device or every iWARP one. */
    void iwListen(IdImpl id) {
        if (id.dev != null) {
            if (isIw(id.dev)) {
                id.iw().listenOn(id.dev);
            }
            return;
        }
        for (RdmaDevice d : core.devices()) {
            if (d.isRegistered() && isIw(d)) {
                id.iw().listenOn(d);
            }
        }
    }

    int responseTimeout() {
        return responseTimeout;
    }

    int maxRetries() {
        return maxRetries;
    }

    /** {@code cm_ack_timeout}: the local ACK timeout of a path of this packet lifetime on rxe. */
    static int ackTimeout(int packetLifeTime) {
        int t = packetLifeTime + 1;
        if (t >= CA_ACK_DELAY) {
            t += CA_ACK_DELAY >= t - 1 ? 1 : 0;
        } else {
            t = CA_ACK_DELAY + (t >= CA_ACK_DELAY - 1 ? 1 : 0);
        }
        return Math.min(31, t);
    }

    /** A port of a device whose GID table holds {@code ip} (RoCE v2 entry), or null. */
    static GidEntry gidOf(RdmaDevice d, InetAddress ip) {
        for (GidEntry e : d.gidTable()) {
            if (e.type() == GidType.ROCE_V2 && e.gid().equals(dev.dmaplane.rdma.verbs.Gid.of(ip))) {
                return e;
            }
        }
        return null;
    }

    /** The registered device and GID entry of {@code ip}, or null ({@code cma_acquire_dev_by_src_ip}). */
    Object[] deviceOf(InetAddress ip) {
        for (RdmaDevice d : core.devices()) {
            if (d.isRegistered()) {
                GidEntry e = gidOf(d, ip);
                if (e != null) {
                    return new Object[]{d, e};
                }
            }
        }
        return null;
    }

    /**
     * The route to {@code dst} ({@code rdma_resolve_ip}'s {@code addr4_resolve}): the port that holds it (a loopback
     * connection), else the first port with an IPv4 address in the same /24, or null when none routes there.
     */
    Object[] route(InetAddress dst) {
        Object[] local = deviceOf(dst);
        if (local != null) {
            return local;
        }
        byte[] d = dst.getAddress();
        for (RdmaDevice dev : core.devices()) {
            if (!dev.isRegistered()) {
                continue;
            }
            for (GidEntry e : dev.gidTable()) {
                byte[] g = e.gid().raw();
                if (e.type() == GidType.ROCE_V2 && isV4Mapped(g) && g[12] == d[0] && g[13] == d[1] && g[14] == d[2]) {
                    return new Object[]{dev, e};
                }
            }
        }
        return null;
    }

    static boolean isV4Mapped(byte[] g) {
        for (int i = 0; i < 10; i++) {
            if (g[i] != 0) {
                return false;
            }
        }
        return g[10] == (byte) 0xFF && g[11] == (byte) 0xFF;
    }

    static InetAddress v4Of(GidEntry e) {
        byte[] g = e.gid().raw();
        try {
            return InetAddress.getByAddress(new byte[]{g[12], g[13], g[14], g[15]});
        } catch (java.net.UnknownHostException x) {
            throw new ErrnoException(Errno.EINVAL, "GID " + e.gid() + " has no IPv4 address", x);
        }
    }

    static void checkV4(InetSocketAddress a, String what) {
        if (a == null || a.isUnresolved() || !(a.getAddress() instanceof Inet4Address)) {
            throw new ErrnoException(Errno.EINVAL, what + " " + a + " is not an IPv4 socket address");
        }
    }

    /**
     * {@code cma_get_port}: binds {@code id} to {@code port} of its port space (0: a free ephemeral one).
     *
     * @throws ErrnoException {@code EADDRINUSE} when another id has that port on an overlapping address
     */
    int bindPort(IdImpl id, InetAddress addr, int port) {
        if (port == 0) {
            for (int n = 0; n <= EPHEMERAL_HI - EPHEMERAL_LO; n++) {
                int p = nextPort;
                nextPort = nextPort == EPHEMERAL_HI ? EPHEMERAL_LO : nextPort + 1;
                if (conflict(id, addr, p) == null) {
                    return p;
                }
            }
            throw new ErrnoException(Errno.EADDRNOTAVAIL, "no free port in " + id.ps);
        }
        IdImpl other = conflict(id, addr, port);
        if (other != null) {
            throw new ErrnoException(Errno.EADDRINUSE, "rdma_bind_addr: port " + port + " of " + id.ps
                    + " is bound to " + other.src);
        }
        return port;
    }

    private IdImpl conflict(IdImpl id, InetAddress addr, int port) {
        for (IdImpl o : ids) {
            if (o != id && o.ps == id.ps && o.src != null && o.src.getPort() == port && !o.child
                    && (o.src.getAddress().isAnyLocalAddress() || addr.isAnyLocalAddress()
                    || o.src.getAddress().equals(addr))) {
                return o;
            }
        }
        return null;
    }

    /**
     * {@code cma_ib_req_handler}: a REQ for a listening id of its service ID whose address takes the REQ's
     * destination; the new id gets CONNECT_REQUEST. Null (and the reason) when none takes it.
     */
    @Override
    public IbCm.Owner request(IbCm.Conn c, Req req, int[] rejectReason) {
        IpHeader h = IpHeader.parse(req.priv());
        if (h == null) {
            return null;
        }
        for (IdImpl l : ids) {
            if (l.state == IdImpl.State.LISTEN && !l.removed && l.ps.serviceId(l.src.getPort()) == req.serviceId()
                    && (l.src.getAddress().isAnyLocalAddress() || l.src.getAddress().equals(h.dst()))
                    && (l.dev == null || l.dev == c.dev)) {
                if (l.pendingRequests.get() >= l.backlog) {
                    rejectReason[0] = RejectReason.CONSUMER_DEFINED; // ucma: -ENOMEM, the new id is destroyed
                    return null;
                }
                return l.channel.childFor(l, c, req, h);
            }
        }
        return null;
    }

    void enqueue(IdImpl id, CmEventType type, IdImpl listen, int status, dev.dmaplane.rdma.cm.ConnParam p) {
        id.channel.add(new EventImpl(id.channel, type, id, listen, status, p));
    }
}
