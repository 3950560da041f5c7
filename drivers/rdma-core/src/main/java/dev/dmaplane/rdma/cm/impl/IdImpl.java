package dev.dmaplane.rdma.cm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.cm.CmEventType;
import dev.dmaplane.rdma.cm.CmId;
import dev.dmaplane.rdma.cm.CmIdInfo;
import dev.dmaplane.rdma.cm.ConnParam;
import dev.dmaplane.rdma.cm.EventChannel;
import dev.dmaplane.rdma.cm.PortSpace;
import dev.dmaplane.rdma.cm.impl.CmMessages.Req;
import dev.dmaplane.rdma.spi.IwConnParam;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.GidEntry;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.VerbsContext;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.security.SecureRandom;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * One rdma_cm id ({@code struct rdma_id_private} of {@code cma.c}): its {@code rdma_cm_state}, the device, port
 * and GID it is bound to, the route, its QP, and the connection manager's id under it: the {@code ib_cm_id}
 * ({@link IbId}, the IB branches of {@code cma.c}) or the {@code iw_cm_id} ({@link IwId}, the iWARP ones). Each verb
 * checks the id's state here and leaves the transport's part to the one or the other. Every method holds the
 * rdma_cm lock.
 */
final class IdImpl implements CmId {
    private static final Logger LOG = LoggerFactory.getLogger(IdImpl.class);
    private static final SecureRandom RANDOM = new SecureRandom();
    /** {@code RDMA_UDP_QKEY}. */
    static final int UDP_QKEY = 0x01234567;
    /** {@code max_backlog} of {@code ucma.c}. */
    static final int MAX_BACKLOG = 1024;

    /** {@code enum rdma_cm_state}. */
    enum State { IDLE, ADDR_QUERY, ADDR_RESOLVED, ROUTE_QUERY, ROUTE_RESOLVED, CONNECT, DISCONNECT, ADDR_BOUND,
        LISTEN, DEVICE_REMOVAL, DESTROYING }

    private final CmaImpl cma;
    final ChannelImpl channel;
    final PortSpace ps;
    State state = State.IDLE;
    RdmaDevice dev;
    int port;
    GidEntry sgid;
    InetSocketAddress src;
    InetSocketAddress dst;
    boolean child;
    boolean removed;
    int backlog;
    final AtomicInteger pendingRequests = new AtomicInteger();
    QueuePair qp;
    /** The ib_cm_id on an InfiniBand or RoCE device (made by {@code rdma_connect} or for a REQ), or null. */
    IbId ib;
    /** The iw_cm_id on an iWARP device (made on first use), or null. */
    IwId iw;
    /** The starting PSN of this end ({@code id_priv->seq_num}). */
    final int seqNum = RANDOM.nextInt() & 0xFF_FFFF;
    // the route ({@code struct sa_path_rec} as cma_resolve_iboe_route fills it)
    Gid dgid;
    Mtu mtu;
    int hopLimit = 64;
    int trafficClass;
    // the connection's depths, from the REQ, REP, or the user's ConnParam
    int responderResources;
    int initiatorDepth;

    IdImpl(CmaImpl cma, ChannelImpl channel, PortSpace ps) {
        this.cma = cma;
        this.channel = channel;
        this.ps = ps;
    }

    @Override
    public PortSpace ps() {
        return ps;
    }

    @Override
    public EventChannel channel() {
        return channel;
    }

    private void checkLive(String call) {
        if (removed) {
            throw new ErrnoException(Errno.ENODEV, call + ": the id's device " + (dev == null ? "" : dev.name())
                    + " went away");
        }
        if (state == State.DESTROYING) {
            throw new ErrnoException(Errno.EINVAL, call + ": the id is destroyed");
        }
    }

    /** The iw_cm_id of this id, made on first use. */
    IwId iw() {
        if (iw == null) {
            iw = new IwId(cma, this);
        }
        return iw;
    }

    /** Whether the id's device is an iWARP RNIC ({@code rdma_cap_iw_cm}): its connections are the iw_cm's. */
    private boolean iwarp() {
        return dev != null && CmaImpl.isIw(dev);
    }

    void event(CmEventType t, int status, ConnParam p) {
        cma.enqueue(this, t, null, status, p);
    }

    @Override
    public void bindAddr(InetSocketAddress addr) {
        synchronized (cma.lock) {
            checkLive("rdma_bind_addr");
            bind(addr);
        }
    }

    private void bind(InetSocketAddress addr) {
        CmaImpl.checkV4(addr, "rdma_bind_addr: address");
        if (state != State.IDLE) {
            throw new ErrnoException(Errno.EINVAL, "rdma_bind_addr: the id is " + state + ", not IDLE");
        }
        InetAddress ip = addr.getAddress();
        Object[] found = null;
        if (!ip.isAnyLocalAddress()) {
            found = cma.deviceOf(ip);
            if (found == null) {
                throw new ErrnoException(Errno.EADDRNOTAVAIL, "rdma_bind_addr: no RDMA port has " + ip.getHostAddress());
            }
        }
        int p = cma.bindPort(this, ip, addr.getPort());
        if (found != null) {
            dev = (RdmaDevice) found[0];
            sgid = (GidEntry) found[1];
            port = sgid.portNum();
        }
        src = new InetSocketAddress(ip, p);
        state = State.ADDR_BOUND;
    }

    @Override
    public void resolveAddr(InetSocketAddress from, InetSocketAddress to, int timeoutMs) {
        synchronized (cma.lock) {
            checkLive("rdma_resolve_addr");
            CmaImpl.checkV4(to, "rdma_resolve_addr: destination");
            if (to.getAddress().isAnyLocalAddress() || to.getAddress().isMulticastAddress() || timeoutMs <= 0) {
                throw new ErrnoException(Errno.EINVAL, "rdma_resolve_addr: destination " + to + ", timeout "
                        + timeoutMs + " ms");
            }
            if (state == State.IDLE) {
                bind(from != null ? from : new InetSocketAddress(wildcard(), 0)); // cma_bind_addr
            } else if (state != State.ADDR_BOUND) {
                throw new ErrnoException(Errno.EINVAL, "rdma_resolve_addr: the id is " + state);
            }
            dst = to;
            Object[] r = dev != null ? new Object[]{dev, sgid} : cma.route(to.getAddress());
            if (r == null) {
                event(CmEventType.ADDR_ERROR, -Errno.EHOSTUNREACH.number(), null);
                return;
            }
            dev = (RdmaDevice) r[0];
            sgid = (GidEntry) r[1];
            port = sgid.portNum();
            src = new InetSocketAddress(CmaImpl.v4Of(sgid), src.getPort());
            state = State.ADDR_RESOLVED;
            event(CmEventType.ADDR_RESOLVED, 0, null);
        }
    }

    private static InetAddress wildcard() {
        return new InetSocketAddress(0).getAddress();
    }

    @Override
    public void resolveRoute(int timeoutMs) {
        synchronized (cma.lock) {
            checkLive("rdma_resolve_route");
            if (state != State.ADDR_RESOLVED || timeoutMs <= 0) {
                throw new ErrnoException(Errno.EINVAL, "rdma_resolve_route: the id is " + state + ", timeout "
                        + timeoutMs + " ms");
            }
            dgid = Gid.of(dst.getAddress());
            mtu = dev.portAttr(port).activeMtu(); // iboe_get_mtu(ndev->mtu)
            state = State.ROUTE_RESOLVED;
            event(CmEventType.ROUTE_RESOLVED, 0, null);
        }
    }

    @Override
    public VerbsContext verbs() {
        synchronized (cma.lock) {
            return dev == null || removed ? null : channel.verbs(dev);
        }
    }

    @Override
    public int portNum() {
        return port;
    }

    @Override
    public QueuePair createQp(ProtectionDomain pd, QpInitAttr attr) {
        ErrnoException.requireNonNull(pd, "protection domain");
        ErrnoException.requireNonNull(attr, "QP init attributes");
        synchronized (cma.lock) {
            checkLive("rdma_create_qp");
            if (dev == null || qp != null || !pd.context().deviceName().equals(dev.name())) {
                throw new ErrnoException(Errno.EINVAL, "rdma_create_qp: " + (dev == null ? "the id has no device"
                        : qp != null ? "the id has a QP" : "a PD of " + pd.context().deviceName() + ", not "
                        + dev.name()));
            }
            QpType want = ps == PortSpace.UDP ? QpType.UD : QpType.RC;
            if (attr.qpType() != want) {
                throw new ErrnoException(Errno.EINVAL, "rdma_create_qp: a " + attr.qpType() + " QP in " + ps
                        + ", which carries " + want);
            }
            QueuePair q = pd.createQp(attr);
            try {
                if (iwarp()) {
                    q.modify(QpAttr.builder().state(QpState.INIT).accessFlags(0).build()); // no iw_cm_id yet
                } else {
                    QpAttr.Builder b = QpAttr.builder().state(QpState.INIT).pkeyIndex(0).port(port);
                    q.modify((want == QpType.UD ? b.qkey(UDP_QKEY) : b.accessFlags(0)).build()); // cma_init_conn_qp
                }
            } catch (RuntimeException e) {
                q.destroy();
                throw e;
            }
            qp = q;
            return q;
        }
    }

    @Override
    public QueuePair qp() {
        synchronized (cma.lock) {
            return qp;
        }
    }

    @Override
    public void destroyQp() {
        synchronized (cma.lock) {
            if (qp != null) {
                QueuePair q = qp;
                qp = null;
                if (!q.isDestroyed()) {
                    q.destroy();
                }
            }
        }
    }

    @Override
    public QpAttr initQpAttr(QpState to) {
        synchronized (cma.lock) {
            checkLive("rdma_init_qp_attr");
            return qpAttr(to);
        }
    }

    /**
     * {@code rdma_init_qp_attr}: the iw_cm's attributes on iWARP; on InfiniBand and RoCE the ib_cm_id's once the id
     * has one ({@code ib_cm_init_qp_attr}), else INIT's alone ({@code cma_ib_init_qp_attr}).
     */
    private QpAttr qpAttr(QpState to) {
        if (iwarp()) {
            return iwQpAttr(to);
        }
        if (hasIbCmId()) {
            return ib.qpAttr(to);
        }
        if (dev == null || to != QpState.INIT) {
            throw new ErrnoException(Errno.EINVAL, "rdma_init_qp_attr " + to + ": the id is " + state);
        }
        return IbId.initAttr(this);
    }

    /** Whether the id has its ib_cm_id ({@code id_priv->cm_id.ib}). */
    private boolean hasIbCmId() {
        return ib != null && ib.conn != null;
    }

    /**
     * {@code iw_cm_init_qp_attr}: INIT and RTR with {@code IB_QP_STATE} and remote read and write access
     * ({@code iwcm_init_qp_init_attr}), RTS with the state alone ({@code iwcm_init_qp_rts_attr}).
     */
    private static QpAttr iwQpAttr(QpState to) {
        return switch (to) {
            case INIT, RTR -> QpAttr.builder().state(to).accessFlags(Access.REMOTE_WRITE | Access.REMOTE_READ)
                    .build();
            case RTS -> QpAttr.builder().state(QpState.RTS).build();
            default -> throw new ErrnoException(Errno.EINVAL, "rdma_init_qp_attr: no attributes for " + to);
        };
    }

    /** {@code cma_modify_qp_rtr} on iWARP: INIT again with the access flags, then RTR; the iw_cm moves it to RTS. */
    private void iwQpToRtr() {
        if (qp != null) {
            qp.modify(iwQpAttr(QpState.INIT));
            qp.modify(iwQpAttr(QpState.RTR));
        }
    }

    /** {@code cma_modify_qp_err}. */
    void qpToErr() {
        if (qp != null && !qp.isDestroyed() && qp.state() != QpState.ERR && qp.state() != QpState.RESET) {
            try {
                qp.modify(QpAttr.builder().state(QpState.ERR).build());
            } catch (ErrnoException e) {
                LOG.debug("cma_modify_qp_err of QP {}: {}", qp.qpNum(), e.getMessage());
            }
        }
    }

    @Override
    public void connect(ConnParam param) {
        ErrnoException.requireNonNull(param, "rdma_conn_param");
        Runnable iwConnect;
        synchronized (cma.lock) {
            checkLive("rdma_connect");
            if (ps == PortSpace.UDP) {
                throw new ErrnoException(Errno.EOPNOTSUPP, "rdma_connect: UD service ID resolution (SIDR) is not "
                        + "implemented");
            }
            if (state != State.ROUTE_RESOLVED) {
                throw new ErrnoException(Errno.EINVAL, "rdma_connect: the id is " + state + ", not ROUTE_RESOLVED");
            }
            ConnParam p = UcmaParams.connect(ps, dev.attr(), param);
            if (iwarp()) {
                iwConnect = connectIw(p);
            } else {
                ib = IbId.connect(cma, this, p); // cma_connect_ib
                state = State.CONNECT;
                return;
            }
        }
        iwConnect.run();
    }

    /**
     * {@code cma_connect_iw} up to {@code iw_cm_connect}: the QP to INIT and RTR, the id to CONNECT (a second
     * {@code rdma_connect} is EINVAL), and the driver's connect to be made by the caller once the rdma_cm lock is let
     * go: siw makes its TCP connection blocking, and Linux holds only this id's {@code handler_mutex} meanwhile, so
     * an unreachable peer must not stall every other id. Called under the rdma_cm lock.
     */
    private Runnable connectIw(ConnParam p) {
        IwConnParam ip = new IwConnParam(p.privateData(), p.initiatorDepth(), p.responderResources());
        iwQpToRtr();
        responderResources = p.responderResources();
        initiatorDepth = p.initiatorDepth();
        state = State.CONNECT;
        return iw().connecting(ip, qp != null ? qp.qpNum() : p.qpNum());
    }

    /**
     * The driver's connect failed ({@code cma_connect_iw}'s error path): the iw_cm_id is destroyed
     * ({@code id_priv->cm_id.iw = NULL}) and the id goes back to ROUTE_RESOLVED unless it was destroyed or its device
     * removed meanwhile. Called under the rdma_cm lock.
     */
    void iwConnectFailed() {
        iw = null;
        if (state == State.CONNECT && !removed) {
            state = State.ROUTE_RESOLVED;
        }
    }

    /** A new id for a REQ its listener took ({@code cma_ib_new_conn_id}): its ib_cm_id, the connection's owner. */
    IbCm.Owner accepting(IdImpl listener, IbCm.Conn c, Req req, IpHeader h) {
        ib = IbId.requested(cma, this, listener, c, req, h);
        return ib;
    }

    @Override
    public void listen(int n) {
        synchronized (cma.lock) {
            checkLive("rdma_listen");
            if (state == State.IDLE) {
                bind(new InetSocketAddress(wildcard(), 0));
            }
            if (state != State.ADDR_BOUND) {
                throw new ErrnoException(Errno.EINVAL, "rdma_listen: the id is " + state + ", not ADDR_BOUND");
            }
            backlog = n > 0 && n < MAX_BACKLOG ? n : MAX_BACKLOG;
            state = State.LISTEN;
            try {
                cma.iwListen(this);
            } catch (RuntimeException e) {
                iw().closeListens(null);
                state = State.ADDR_BOUND;
                throw e;
            }
        }
    }

    /** On iWARP: {@code iw_cm_accept} and {@code iw_cm_reject} are EINVAL unless the iw_cm_id is in CONN_RECV. */
    private void checkIwRequest(String call) {
        checkLive(call);
        if (!child || state != State.CONNECT || iw == null || iw.request == null) {
            throw new ErrnoException(Errno.EINVAL, call + ": the id is " + state + ", not a CONNECT_REQUEST "
                    + "waiting for an answer");
        }
    }

    /**
     * {@code rdma_accept}: librdmacm's checks ({@link UcmaParams}), then {@code cma_accept_iw} or
     * {@code cma_accept_ib}; when that fails, {@code rdma_accept}'s {@code reject:} path moves the QP to ERR
     * ({@code cma_modify_qp_err}), rejects the request ({@code rdma_reject(id, NULL, 0, IB_CM_REJ_CONSUMER_DEFINED)})
     * and returns the error. On iWARP the reject is the MPA reject only while the request is still pending (the QP
     * could not be moved, or the driver's accept found no such QP); a driver accept that failed later ended the
     * request itself ({@code iw_cm_reject} is then EINVAL and sends nothing). The id stays in CONNECT.
     * <p>
     * On InfiniBand and RoCE {@code rdma_accept} asks only for CONNECT ({@code cma_comp}) and lets the ib_cm_id
     * answer: an id whose request was rejected already (its ib_cm_id IDLE) gets EINVAL from the QP's move
     * ({@code ib_cm_init_qp_attr}), its QP goes to ERR, and the second REJ is refused by {@code ib_send_cm_rej}, so
     * the peer sees nothing new.
     */
    @Override
    public void accept(ConnParam param) {
        ErrnoException.requireNonNull(param, "rdma_conn_param");
        synchronized (cma.lock) {
            checkLive("rdma_accept");
            if (iwarp()) {
                checkIwRequest("rdma_accept");
            } else if (state != State.CONNECT || !hasIbCmId()) {
                throw new ErrnoException(Errno.EINVAL, "rdma_accept: the id is " + state + (!hasIbCmId()
                        ? " without an ib_cm_id" : ""));
            }
            ConnParam p = UcmaParams.accept(ps, dev.attr(), param, responderResources, initiatorDepth);
            if (iwarp()) {
                try {
                    acceptIw(p);
                } catch (RuntimeException e) {
                    qpToErr();
                    iw.rejectFailedAccept();
                    throw e;
                }
                return;
            }
            responderResources = p.responderResources();
            initiatorDepth = p.initiatorDepth();
            ib.accept(p);
        }
    }

    /** {@code cma_accept_iw}: the QP to RTR, then {@code iw_cm_accept} with it. Called under the rdma_cm lock. */
    private void acceptIw(ConnParam p) {
        IwConnParam ip = new IwConnParam(p.privateData(), p.initiatorDepth(), p.responderResources());
        iwQpToRtr();
        iw.accept(ip, qp != null ? qp.qpNum() : p.qpNum());
        responderResources = p.responderResources();
        initiatorDepth = p.initiatorDepth();
    }

    /**
     * {@code rdma_reject}: it asks only that the id has a connection manager's id, and leaves the rest to it. On
     * InfiniBand and RoCE {@code ib_send_cm_rej} answers by the ib_cm_id's state ({@link IbId#reject}), so an active
     * id rejects too: its REQ before the REP comes, or the REP an id without a QP got (CONNECT_RESPONSE). On iWARP
     * {@code iw_cm_reject} is EINVAL in every state but CONN_RECV, so only a CONNECT_REQUEST waiting for an answer
     * rejects. The id stays in CONNECT either way.
     */
    @Override
    public void reject(byte[] privateData) {
        if (privateData != null && privateData.length > ConnParam.MAX_PRIVATE_DATA) {
            throw new ErrnoException(Errno.EINVAL, "rdma_reject: private_data_len " + privateData.length
                    + " outside 0.." + ConnParam.MAX_PRIVATE_DATA + " (a u8)");
        }
        synchronized (cma.lock) {
            if (iwarp()) {
                checkIwRequest("rdma_reject");
                iw.reject(privateData); // rdma_reject's iw_cm_reject leaves the id in CONNECT
                return;
            }
            checkLive("rdma_reject");
            if (!hasIbCmId()) {
                throw new ErrnoException(Errno.EINVAL, "rdma_reject: the id is " + state + ", without an ib_cm_id");
            }
            ib.reject(privateData);
        }
    }

    @Override
    public void establish() {
        synchronized (cma.lock) {
            checkLive("rdma_establish");
            if (!hasIbCmId()) {
                throw new ErrnoException(Errno.EINVAL, "rdma_establish: no CONNECT_RESPONSE waits on the id");
            }
            ib.establish();
        }
    }

    @Override
    public void disconnect() {
        synchronized (cma.lock) {
            checkLive("rdma_disconnect");
            if (iwarp()) {
                disconnectIw();
                return;
            }
            if (!hasIbCmId()) {
                throw new ErrnoException(Errno.EINVAL, "rdma_disconnect: the id is " + state + ", without an "
                        + "ib_cm_id");
            }
            qpToErr(); // cma.c: the QP to ERR, then the ib_cm_id's DREQ or DREP
            ib.disconnect();
        }
    }

    /**
     * {@code rdma_disconnect} on iWARP: librdmacm's {@code ucma_shutdown} moves the id's QP to SQD
     * ({@code ucma_modify_qp_sqd}, its failure returned), then {@code cma.c}'s {@code rdma_disconnect} is EINVAL
     * without an iw_cm_id and {@code iw_cm_disconnect(cm_id, 0)} otherwise. Called under the rdma_cm lock.
     */
    private void disconnectIw() {
        if (qp != null && !qp.isDestroyed()) {
            qp.modify(QpAttr.builder().state(QpState.SQD).build());
        }
        if (iw == null) {
            throw new ErrnoException(Errno.EINVAL, "rdma_disconnect: the id is " + state + ", without an iw_cm_id");
        }
        iw.disconnect();
    }

    @Override
    public void destroy() {
        synchronized (cma.lock) {
            if (state == State.DESTROYING) {
                return;
            }
            state = State.DESTROYING;
            if (iw != null) {
                iw.destroy();
            }
            if (hasIbCmId()) {
                ib.destroy();
            }
            cma.ids.remove(this);
        }
        channel.dropEvents(this);
    }

    /** {@code cma_process_remove}: DEVICE_REMOVAL; every later call but destroy is ENODEV. */
    void deviceRemoved() {
        removed = true;
        state = State.DEVICE_REMOVAL;
        if (iw != null) {
            iw.closeListens(null);
        }
        ib = null;
        event(CmEventType.DEVICE_REMOVAL, 0, null);
    }

    @Override
    public InetSocketAddress localAddr() {
        synchronized (cma.lock) {
            return src;
        }
    }

    @Override
    public InetSocketAddress remoteAddr() {
        synchronized (cma.lock) {
            return dst;
        }
    }

    @Override
    public String state() {
        synchronized (cma.lock) {
            return state.name();
        }
    }

    CmIdInfo info() {
        return new CmIdInfo(dev == null ? null : dev.name(), port, qp == null ? 0 : qp.qpNum(), ps, state.name(), src,
                dst);
    }

    @Override
    public String toString() {
        return "cm_id " + info();
    }
}
