package dev.dmaplane.driver.siw;

import dev.dmaplane.device.Device;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwMr;
import dev.dmaplane.rdma.spi.HwMw;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.IwCm;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.spi.NetdevInfo;
import dev.dmaplane.rdma.spi.QpStateMachine;
import dev.dmaplane.rdma.spi.RdmaDeviceHandle;
import dev.dmaplane.rdma.spi.RdmaProvider;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.Mtu;
import dev.dmaplane.rdma.verbs.NodeType;
import dev.dmaplane.rdma.verbs.PortAttr;
import dev.dmaplane.rdma.verbs.PortState;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WrOpcode;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.SequencedMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;

/**
 * One siw device ({@code struct siw_device}) with its verbs ({@code siw_verbs.c}): an RNIC on an Ethernet netdev
 * whose IPv4 address its TCP connections use, RC QPs only, no atomics, one SGE per READ, connections only through
 * its connection manager ({@link SiwCm}, {@code siw_cm.c}, offered as {@link IwCm}), whose MPA revision and
 * peer-to-peer mode it holds. The regions and their STag checks are {@link SiwRegions} ({@code siw_mem.c}). The TX
 * thread ({@link Tx}) sends for every QP of the device; each connection's thread ({@link Cep}) receives.
 */
final class SiwProvider implements RdmaProvider {
    private final Device device;
    private final DeviceAttr attr;
    private final NetdevInfo netdev;
    private final InetAddress address;
    private final PortAttr port;
    private volatile RdmaDeviceHandle handle;
    final Tx tx;
    /** The connection manager ({@code siw_cm.c}): listeners, connects, the device's endpoints. */
    final SiwCm cm = new SiwCm(this);
    /** {@code siw_cm_wq}'s MPA timers of the device's endpoints. */
    final MpaTimers mpaTimers = new MpaTimers();
    private final Map<Integer, SiwQp> qps = new ConcurrentHashMap<>();
    private final SiwQpStates states = new SiwQpStates(this::txBusy);
    /** The device's registered regions and the checks of their STags ({@code siw_mem.c}). */
    final SiwRegions regions = new SiwRegions();
    private final AtomicLong terminatesSent = new AtomicLong();
    private final AtomicLong terminatesReceived = new AtomicLong();
    /** siw's {@code mpa_version}: the MPA revision this device asks for and answers up to (1 or 2). */
    private volatile int mpaRevision = Mpa.REVISION_2;
    /** siw's {@code peer_to_peer}: whether a connect asks for an RTR message (MPA v2 only). */
    private volatile boolean peerToPeer;
    /** The capture every connection of the device writes to, or null. */
    volatile TcpCapture capture;
    /**
     * Runs on a connection's receive thread after each FPDU it processed, or null: how a test puts something between
     * two segments of a message read off the stream together. Read once, when the receive path takes the stream.
     */
    volatile Runnable afterFpdu;
    /**
     * Runs when a connection went away under its QP ({@link SiwQp#connectionGone}), after the QP left it and before
     * the QP moves to ERR, with the QP's state lock held, or null: how a test puts a modify between the two.
     */
    volatile Runnable afterDetach;

    SiwProvider(Device device, DeviceAttr attr, NetdevInfo netdev, InetAddress address) {
        this.device = device;
        this.attr = attr;
        this.netdev = netdev;
        this.address = address;
        this.port = PortAttr.iwarp(PortState.ACTIVE, Mtu.fromNetdevMtu(netdev.mtu()), 16);
        // one FPDU per TCP segment of the netdev's MSS (siw's c_tx->tcp_seglen), at most what an IPv4 packet holds
        this.tx = new Tx(this, Math.min(netdev.mtu() - 40, 65535 - 40));
    }

    /** Starts the TX thread and the MPA timer thread of the device {@code h} names. */
    void start(RdmaDeviceHandle h) {
        this.handle = h;
        mpaTimers.start(h.name());
        tx.start();
    }

    /**
     * Stops listening, closes every connection (their QPs go to ERR) and waits for their threads, then stops the
     * MPA timers and the TX thread: no thread of the device stays.
     */
    void stop() {
        cm.stop();
        mpaTimers.stop();
        tx.stop();
    }

    /**
     * Sets siw's module parameters {@code mpa_version} and {@code peer_to_peer} for the connections this device
     * makes or accepts from now on.
     *
     * @throws ErrnoException {@code EINVAL} for a revision other than 1 or 2, or peer-to-peer with revision 1
     */
    void mpa(int revision, boolean p2p) {
        if (revision != Mpa.REVISION_1 && revision != Mpa.REVISION_2) {
            throw new ErrnoException(Errno.EINVAL, "siw: mpa_version " + revision + " is not 1 or 2");
        }
        if (p2p && revision != Mpa.REVISION_2) {
            throw new ErrnoException(Errno.EINVAL, "siw: peer_to_peer needs mpa_version 2, not " + revision);
        }
        mpaRevision = revision;
        peerToPeer = p2p;
    }

    /**
     * Sets how long the device's responders wait for an MPA request ({@code MPAREP_TIMEOUT}, 5 s) and its initiators
     * for the MPA reply ({@code MPAREQ_TIMEOUT}, 10 s), for the connections made or accepted from now on; siw has
     * them as constants.
     *
     * @throws ErrnoException {@code EINVAL} for a duration that is not positive
     */
    void mpaTimeouts(Duration request, Duration reply) {
        mpaTimers.set(request, reply);
    }

    int mpaRevision() {
        return mpaRevision;
    }

    boolean peerToPeer() {
        return peerToPeer;
    }

    /** The device's ORD and IRD limit ({@code SIW_MAX_ORD_QP}, {@code SIW_MAX_IRD_QP}). */
    int maxReadDepth() {
        return attr.maxQpInitRdAtom();
    }

    String name() {
        RdmaDeviceHandle h = handle;
        return h == null ? netdev.name() : h.name();
    }

    InetAddress address() {
        return address;
    }

    MemoryAccess memory() {
        return handle.memory();
    }

    @Override
    public String driverName() {
        return SiwDriver.NAME;
    }

    @Override
    public Device dmaDevice() {
        return device;
    }

    @Override
    public DeviceAttr deviceAttr() {
        return attr;
    }

    @Override
    public PortAttr portAttr(int p) {
        return port;
    }

    @Override
    public NetdevInfo netdev(int p) {
        return netdev;
    }

    @Override
    public NodeType nodeType() {
        return NodeType.RNIC;
    }

    @Override
    public Optional<IwCm> iwCm() {
        return Optional.of(cm);
    }

    @Override
    public SequencedMap<String, Long> hwCounters(int p) {
        SequencedMap<String, Long> m = new LinkedHashMap<>();
        m.put("dmaplane_terminate_sent", terminatesSent.get());
        m.put("dmaplane_terminate_received", terminatesReceived.get());
        return m;
    }

    /**
     * {@code siw_create_qp}'s queues: RC only (EOPNOTSUPP), a send queue of at least one entry (EINVAL), each queue
     * rounded up to a power of two ({@code roundup_pow_of_two}: siw's rings index by a free-running counter modulo
     * their size), the SGE counts as asked, and {@code SIW_MAX_INLINE} inline bytes, which {@code siw_post_send}
     * takes whatever {@code max_inline_data} was asked ({@code siw_copy_inline_sgl}). {@code attrs->cap} is left as
     * it was, so {@code ibv_create_qp} reports the request and {@code siw_query_qp} these.
     */
    @Override
    public QpCap qpQueueCap(QpType type, QpCap requested) {
        if (type != QpType.RC) {
            throw new ErrnoException(Errno.EOPNOTSUPP, "siw: only RC QPs are supported, not " + type);
        }
        if (requested.maxSendWr() == 0) {
            throw new ErrnoException(Errno.EINVAL, "siw: a QP needs a send queue (max_send_wr 0)");
        }
        return new QpCap(SiwQp.roundUpPowerOfTwo(requested.maxSendWr()),
                SiwQp.roundUpPowerOfTwo(requested.maxRecvWr()), requested.maxSendSge(), requested.maxRecvSge(),
                attr.maxInlineData());
    }

    /** {@code siw_create_qp}: the QP, IDLE, on the device's list ({@link #qpQueueCap} made its queues). */
    @Override
    public void createQp(HwQp qp) {
        qps.put(qp.qpNum(), new SiwQp(qp));
    }

    /**
     * siw keeps no SQD drain: {@code siw_verbs_modify_qp} reads only the state and the access flags, so
     * {@code EN_SQD_ASYNC_NOTIFY} raises nothing, and {@code siw_query_qp} sets no {@code sq_draining}.
     */
    @Override
    public boolean tracksSqDrain() {
        return false;
    }

    /**
     * {@code siw_sqe_complete} and {@code siw_rqe_complete} write the CQE and nothing else: a siw QP goes to ERR when
     * its connection is released ({@code siw_qp_llp_close}, {@link SiwQp#connectionGone}, {@link SiwQp#rxFailed}) or
     * by a modify, and stays in RTS after an error of its transmit side ({@code siw_qp_sq_process},
     * {@link TxEngine}) or a SEND with Invalidate whose STag cannot be invalidated ({@code siw_rdmap_complete}).
     */
    @Override
    public boolean completionErrorMovesQp(HwQp qp, boolean send, WcStatus status) {
        return false;
    }

    /** siw decides its QPs' states itself ({@code siw_qp_modify}), not by {@code ib_modify_qp_is_ok}. */
    @Override
    public Optional<QpStateMachine> qpStateMachine() {
        return Optional.of(states);
    }

    /**
     * {@code siw_qp_modify} once {@link SiwQpStates} chose the state: ERROR drops the connection
     * ({@code siw_qp_nextstate_from_idle} puts the endpoint, {@code siw_qp_nextstate_from_rts} calls
     * {@code siw_qp_cm_drop}); CLOSING and TERMINATE from RTS take the QP off its connection (with a TERMINATE for
     * the latter), which {@link #quiesce} drops once the QP is in its new state.
     */
    @Override
    public void modifyQp(HwQp hw, QpAttr a, QpState from, QpState to) {
        SiwQp q = qps.get(hw.qpNum());
        if (q != null && to == QpState.ERR) {
            q.flushingSq(from);
            q.flushRecvInProgress(); // siw_rq_flush, before the core flushes the rest
        }
        if (q != null && from == QpState.SQD && to == QpState.INIT) {
            q.flushLeftOver();
        }
        Cep c = q == null ? null : q.cep;
        if (c == null) {
            if (q != null && from == QpState.RTS && to == QpState.SQD) {
                q.closeWithoutConnection();
            }
            return;
        }
        if (to == QpState.ERR) {
            if (q.detach(c)) {
                q.sendTermInfo(c);
                c.lost("qp " + hw.qpNum() + " moved to " + to, false);
            }
        } else if (from == QpState.RTS && (to == QpState.SQD || to == QpState.SQE)) {
            q.leaveRts(c, to == QpState.SQE);
        }
    }

    /** {@code siw_query_qp}: what the QP reports ({@link SiwQp#query}). */
    @Override
    public QpAttr queryQp(HwQp hw, QpAttr held) {
        SiwQp q = qps.get(hw.qpNum());
        return q == null ? held : q.query(held, attr.maxInlineData(), port.activeMtu());
    }

    /**
     * A modify of a QP on a connection runs with the QP's transmit engine held off, as {@code siw_verbs_modify_qp}
     * holds {@code qp->state_lock} for writing against {@code siw_qp_sq_process}: {@link SiwQpStates} sees the
     * transmit side as it is ({@link #txBusy}) and a TERMINATE goes out between FPDUs. The loss of the connection
     * ({@code siw_qp_llp_close}, which takes the same lock) comes wholly before or after it: a modify racing the
     * peer's close finds the QP in RTS or already in ERR, never moved under it ({@link SiwQp#modifying}). A
     * connection the modify took the QP off is dropped afterwards, once the QP is in its new state
     * ({@link SiwQp#dropConnection}); work posted meanwhile on a QP that stayed connected is handed to the TX thread.
     */
    @Override
    public <T> T quiesce(HwQp hw, Supplier<T> change) {
        SiwQp q = qps.get(hw.qpNum());
        if (q == null) {
            return change.get();
        }
        if (q.cep == null) {
            try {
                return q.modifying(change); // a connection's loss may have taken it off and not yet moved it to ERR
            } finally {
                q.dropConnection(); // a CLOSING without a connection flushes its receives once in it
                q.sqFlushed();
            }
        }
        try {
            return q.modifying(change);
        } finally {
            q.dropConnection();
            q.sqFlushed();
            Cep c = q.cep;
            if (c != null && c.isEstablished()) {
                tx.kick(q);
            }
        }
    }

    /** {@code tx_wqe(qp)->wr_status != SIW_WR_IDLE} for {@link SiwQpStates}, asked inside {@link #quiesce}. */
    private boolean txBusy(HwQp hw) {
        SiwQp q = qps.get(hw.qpNum());
        return q != null && q.txBusy();
    }

    @Override
    public void destroyQp(HwQp hw) {
        SiwQp q = qps.remove(hw.qpNum());
        if (q == null) {
            return;
        }
        q.destroyed = true;
        Cep c = q.cep;
        if (c != null && q.detach(c)) {
            c.lost("qp " + hw.qpNum() + " destroyed", false);
            c.join();
        }
    }

    /** {@code siw_post_receive}: EINVAL for a QP without a receive queue ({@link SiwQpStates#noReceiveQueue}). */
    @Override
    public Errno recvQueueFullErrno(HwQp qp) {
        return SiwQpStates.noReceiveQueue(qp) ? Errno.EINVAL : Errno.ENOMEM;
    }

    /** {@code siw_post_send}'s opcode switch: what siw does not carry is refused; a READ has one SGE. */
    @Override
    public void checkSend(HwQp qp, SendWr wr) {
        WrOpcode op = wr.opcode();
        switch (op) {
            case SEND, SEND_WITH_INV, RDMA_WRITE, LOCAL_INV -> {
            }
            case RDMA_READ -> {
                if (wr.sgList().size() != 1) {
                    throw new ErrnoException(Errno.EINVAL, "siw: an RDMA READ sink is one SGE (iWARP), not "
                            + wr.sgList().size());
                }
            }
            default -> throw new ErrnoException(Errno.EINVAL, "siw: work request opcode " + op + " unsupported");
        }
    }

    @Override
    public void postSend(HwQp hw) {
        SiwQp q = qps.get(hw.qpNum());
        Cep c = q == null ? null : q.cep;
        if (c != null && c.isEstablished()) {
            tx.post(q, c);
        }
    }

    /**
     * {@code siw_device_ops} has no {@code reg_user_mr_dmabuf}: siw copies with the CPU from pinned user pages and
     * cannot follow a dma-buf's moves, so {@code ibv_reg_dmabuf_mr} is refused with EOPNOTSUPP
     * ({@code UVERBS_METHOD_REG_DMABUF_MR}).
     */
    @Override
    public boolean hasRegUserMrDmabuf() {
        return false;
    }

    /**
     * {@code siw_invalidate_stag}: a LOCAL_INV ({@code siw_qp_sq_proc_local}, {@code SIW_OP_INVAL_STAG}) and a SEND
     * with Invalidate ({@code siw_rdmap_complete}) invalidate the STag of any region of the QP's PD, lkey and rkey
     * alike (siw gives a region one STag); from then on {@code siw_check_mem} refuses it until deregistration.
     */
    @Override
    public boolean invalidatesRegions() {
        return true;
    }

    @Override
    public void regMr(HwMr mr) {
        regions.add(mr);
    }

    @Override
    public void deregMr(HwMr mr) {
        regions.remove(mr);
    }

    /** siw has no memory windows ({@code SIW_MAX_MW} 0, no {@code alloc_mw}). */
    @Override
    public void allocMw(HwMw mw) {
        throw new ErrnoException(Errno.EOPNOTSUPP, "siw: memory windows are not supported");
    }

    void terminateSent(Terminate t) {
        terminatesSent.incrementAndGet();
    }

    void terminated(Terminate t) {
        terminatesReceived.incrementAndGet();
    }

    /** {@code siw_qp_id2obj}: QP {@code qpn} of this device, or null. */
    SiwQp qp(int qpn) {
        return qps.get(qpn);
    }

    /** The active side saw the three-way handshake. */
    void captureHandshake(Cep c) {
        TcpCapture cap = capture;
        if (cap == null) {
            return;
        }
        InetSocketAddress l = c.local();
        InetSocketAddress r = c.remote();
        long il = TcpCapture.isn(l, r);
        long ir = TcpCapture.isn(r, l);
        byte[] none = new byte[0];
        cap.segment(l, r, il, 0, TcpCapture.SYN, none, 0, 0);
        cap.segment(r, l, ir, il + 1, TcpCapture.SYN | TcpCapture.ACK, none, 0, 0);
        cap.segment(l, r, il + 1, ir + 1, TcpCapture.ACK, none, 0, 0);
    }

    /** {@code [off, off + len)} of {@code b} leaves on {@code c}'s stream (copied only when a capture is on). */
    void captureData(Cep c, ByteBuffer b, int off, int len) {
        TcpCapture cap = capture;
        if (cap != null) {
            InetSocketAddress l = c.local();
            InetSocketAddress r = c.remote();
            byte[] bytes = new byte[len];
            b.get(off, bytes);
            cap.segment(l, r, TcpCapture.isn(l, r) + 1 + c.sent, TcpCapture.isn(r, l) + 1 + c.received,
                    TcpCapture.PSH | TcpCapture.ACK, bytes, 0, len);
        }
        c.sent += len;
    }

    void captureFin(Cep c) {
        TcpCapture cap = capture;
        InetSocketAddress l = c.local();
        InetSocketAddress r = c.remote();
        if (cap != null && l != null && r != null) {
            cap.segment(l, r, TcpCapture.isn(l, r) + 1 + c.sent, TcpCapture.isn(r, l) + 1 + c.received,
                    TcpCapture.FIN | TcpCapture.ACK, new byte[0], 0, 0);
        }
    }
}
