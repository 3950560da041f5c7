package dev.dmaplane.rdma.cm.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.cm.RejectReason;
import dev.dmaplane.rdma.cm.impl.CmMessages.Ids;
import dev.dmaplane.rdma.cm.impl.CmMessages.Rej;
import dev.dmaplane.rdma.cm.impl.CmMessages.Rep;
import dev.dmaplane.rdma.cm.impl.CmMessages.Req;
import dev.dmaplane.rdma.mad.Mad;
import dev.dmaplane.rdma.mad.MadAddress;
import dev.dmaplane.rdma.mad.MadAgent;
import dev.dmaplane.rdma.mad.MadHandler;
import dev.dmaplane.rdma.mad.MadSendBuf;
import dev.dmaplane.rdma.mad.MadSendStatus;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.QpState;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * The IB communication manager ({@code drivers/infiniband/core/cm.c}, IBTA chapter 12) for the connections of the
 * rdma_cm: one MAD agent of class CM, version 2, per device port; a {@link Conn} per connection with its local and
 * remote communication IDs and the state of {@code enum ib_cm_state}; REQ, REP and DREQ sent with the CM's
 * timeout and retries (the MAD layer resends them) and cancelled by the answer; RTU, REJ and DREP sent once and
 * resent when the peer repeats what they answer; a REQ or REP the owner has prepared an MRA for
 * ({@link #prepareMra}) answered, when the peer repeats it, with an MRA of service timeout {@link #MRA_SETTING};
 * other duplicates dropped; a REQ nobody listens for rejected with
 * INVALID_SERVICE_ID, one from a QP still connected with STALE_CONN and a DREQ on the old connection. Transaction
 * IDs as {@code cm.c} gives them: a REQ and a DREQ a new one ({@code cm_form_tid}); the REP, RTU, REJ and DREP of a
 * connection its {@link Conn#tid} (the REQ's, the DREQ's once one came); {@code cm_issue_rej} and
 * {@code cm_issue_drep} the TID of the message they answer. A connection is known by its local ID from
 * {@link #create} to {@link #destroy} ({@code cm.c}'s local ID table), whatever state it reaches; by its remote ID
 * and remote QP only while it is being set up or connected ({@code cm_remove_remote} takes it out of those tables
 * when it goes IDLE or enters time wait). Every method runs under the rdma_cm's lock, which {@link CmaImpl} holds
 * around calls in and takes for MADs and timers.
 *
 * <p>Over 600 lines as {@code cm.c} is one file: the senders and the handlers of one state machine and its three
 * tables, each state's rule in the one place that changes it.
 */
final class IbCm {
    private static final Logger LOG = LoggerFactory.getLogger(IbCm.class);

    /** {@code CM_MRA_SETTING}: the service timeout of the MRAs this CM sends, 4.096 us * 2^24 (about 68.7 s). */
    static final int MRA_SETTING = 24;

    /**
     * {@code enum ib_cm_state}, the states a connection of this CM takes: the MRA_*_RCVD ones after the peer's MRA
     * to the REQ or REP sent; MRA_REQ_SENT and MRA_REP_SENT once the owner prepared an MRA ({@link #prepareMra}) to
     * the REQ or REP received, which a repeat of that message then gets.
     */
    enum State { IDLE, REQ_SENT, MRA_REQ_RCVD, REQ_RCVD, MRA_REQ_SENT, REP_SENT, MRA_REP_RCVD, REP_RCVD, MRA_REP_SENT,
        ESTABLISHED, DREQ_SENT, DREQ_RCVD, TIMEWAIT }

    /** What the CM tells the connection's owner ({@code enum ib_cm_event_type}). */
    enum Event { REQ_ERROR, MRA_RECEIVED, REP_RECEIVED, RTU_RECEIVED, REJ_RECEIVED, REP_ERROR, DREQ_RECEIVED,
        DREP_RECEIVED, DREQ_ERROR, TIMEWAIT_EXIT }

    /** The owner of a connection: the rdma_cm id ({@code cma_ib_handler}). */
    interface Owner {
        void cmEvent(Conn c, Event e, Object msg);
    }

    /** Where REQs go: the rdma_cm's listeners ({@code cma_ib_req_handler}); null rejects with INVALID_SERVICE_ID. */
    interface Listeners {
        /** A new connection in REQ_RCVD: its owner, or null when no listener takes it (the REQ is then rejected). */
        Owner request(Conn c, Req req, int[] rejectReason);
    }

    /** One connection ({@code struct cm_id_private}). */
    final class Conn {
        final int localId;
        final RdmaDevice dev;
        final int port;
        final MadAgent agent;
        Owner owner;
        State state = State.IDLE;
        MadAddress peer;
        int remoteId;
        long remoteCaGuid;
        int remoteQpn;
        /** The QPN of this end's QP, as its REQ or REP named it ({@code cm_id_priv->local_qpn}). */
        int localQpn;
        /**
         * The transaction ID of this end's answers ({@code cm_id_priv->tid}): its own REQ's ({@code ib_send_cm_req}),
         * the REQ's it received ({@code cm_req_handler}), then the DREQ's it received ({@code cm_dreq_handler}).
         */
        long tid;
        /** The send waiting for its answer (REQ, REP, DREQ: {@code cm_id_priv->msg}), or null. */
        MadSendBuf msg;
        /** The last RTU, REJ or DREP sent, resent when the peer repeats the message it answered. */
        Mad lastReply;
        int timeoutMs;
        int retries;
        /** Time wait in ms ({@code cm_convert_to_ms} of the path's ack timeout). */
        int timewaitMs = 1;

        Conn(RdmaDevice dev, int port, MadAgent agent, int localId) {
            this.dev = dev;
            this.port = port;
            this.agent = agent;
            this.localId = localId;
        }

        /** {@code cm_form_tid}: the agent's {@code hi_tid} over the local communication ID, for a REQ or DREQ. */
        long formTid() {
            return (long) agent.hiTid() << 32 | (localId & 0xFFFF_FFFFL);
        }
    }

    private final Object lock;
    private final Listeners listeners;
    private final ScheduledThreadPoolExecutor timers;
    private final Map<List<Object>, MadAgent> agents = new HashMap<>();
    private final Map<Integer, Conn> byLocalId = new HashMap<>();
    private final Map<List<Object>, Conn> byRemoteId = new HashMap<>();
    private final Map<List<Object>, Conn> byRemoteQpn = new HashMap<>();
    private int nextLocalId;

    IbCm(Object lock, Listeners listeners, ScheduledThreadPoolExecutor timers, int firstLocalId) {
        this.lock = lock;
        this.listeners = listeners;
        this.timers = timers;
        this.nextLocalId = firstLocalId;
    }

    /** {@code cm_convert_to_ms}: an IBA time exponent as milliseconds. */
    static int toMs(int ibaTime) {
        return 1 << Math.max(ibaTime - 8, 0);
    }

    /** {@code cm_add_one}: the CM's agent on a device port. */
    void addPort(RdmaDevice dev, int port) {
        List<Object> key = List.of(dev, port);
        if (!agents.containsKey(key)) {
            agents.put(key, dev.registerMadAgent(port, Mad.CLASS_CM, Mad.CM_CLASS_VERSION, new Handler(dev, port)));
        }
    }

    /** The port's CM agent (registered at {@link #addPort}, or now). */
    private MadAgent agent(RdmaDevice dev, int port) {
        addPort(dev, port);
        return agents.get(List.of(dev, port));
    }

    /** {@code ib_create_cm_id}. */
    Conn create(RdmaDevice dev, int port, Owner owner) {
        MadAgent a = agent(dev, port);
        int id;
        do {
            id = nextLocalId++;
        } while (id == 0 || byLocalId.containsKey(id));
        Conn c = new Conn(dev, port, a, id);
        c.owner = owner;
        byLocalId.put(id, c);
        return c;
    }

    /** {@code ib_post_send_mad} of a MAD of the connection, which its send carries as context. */
    private void send(Conn c, Mad m, boolean waits) {
        if (waits) {
            c.msg = c.agent.send(c.peer, m, c.timeoutMs, c.retries, c);
        } else {
            c.agent.send(c.peer, m, 0, 0, c);
        }
    }

    private void cancelWaiting(Conn c) {
        if (c.msg != null) {
            c.agent.cancel(c.msg);
            c.msg = null;
        }
    }

    /** {@code ib_send_cm_req}. */
    void sendReq(Conn c, Req req, MadAddress peer, int timeoutMs, int retries) {
        if (c.state != State.IDLE) {
            throw new ErrnoException(Errno.EINVAL, "ib_send_cm_req in " + c.state);
        }
        CmMessages.checkPrivate("REQ", req.priv(), CmMessages.REQ_PRIVATE);
        c.peer = peer;
        c.timeoutMs = timeoutMs;
        c.retries = retries;
        c.timewaitMs = toMs(req.localAckTimeout());
        Mad m = req.toMad(c.formTid());
        c.tid = m.tid();
        send(c, m, true);
        c.localQpn = req.localQpn();
        c.state = State.REQ_SENT;
    }

    /**
     * {@code ib_prepare_cm_mra}: a REQ received (REQ_RCVD) or a REP received (REP_RCVD) moves to MRA_REQ_SENT or
     * MRA_REP_SENT, sending nothing; the MRA goes only when the peer repeats that message ({@code cm_dup_req_handler},
     * {@code cm_dup_rep_handler}). EINVAL in any other state (the LAP's MRA aside, which RoCE has none of).
     */
    void prepareMra(Conn c) {
        c.state = switch (c.state) {
            case REQ_RCVD -> State.MRA_REQ_SENT;
            case REP_RCVD -> State.MRA_REP_SENT;
            default -> throw new ErrnoException(Errno.EINVAL, "ib_prepare_cm_mra in " + c.state);
        };
    }

    /**
     * {@code cm_format_mra}: the MRA of the message received ({@code CM_MSG_RESPONSE_REQ} or {@code _REP}) with the
     * connection's IDs, service timeout {@link #MRA_SETTING} and the connection's TID, to where the repeat came from
     * ({@code cm_alloc_response_msg}).
     */
    private void sendMra(Conn c, MadAddress to, int mraed) {
        c.agent.send(to, new Ids(CmMessages.ATTR_MRA, c.localId, c.remoteId, mraed << 14 | MRA_SETTING << 3,
                new byte[0]).toMad(c.tid), 0, 0, c);
    }

    /** {@code ib_send_cm_rep}: from REQ_RCVD or MRA_REQ_SENT. */
    void sendRep(Conn c, Rep rep) {
        if (c.state != State.REQ_RCVD && c.state != State.MRA_REQ_SENT) {
            throw new ErrnoException(Errno.EINVAL, "ib_send_cm_rep in " + c.state);
        }
        CmMessages.checkPrivate("REP", rep.priv(), CmMessages.REP_PRIVATE);
        send(c, rep.toMad(c.tid), true);
        c.localQpn = rep.localQpn();
        c.state = State.REP_SENT;
    }

    /** {@code ib_send_cm_rtu}: from REP_RCVD or MRA_REP_SENT. */
    void sendRtu(Conn c, byte[] priv) {
        if (c.state != State.REP_RCVD && c.state != State.MRA_REP_SENT) {
            throw new ErrnoException(Errno.EINVAL, "ib_send_cm_rtu in " + c.state);
        }
        Mad m = new Ids(CmMessages.ATTR_RTU, c.localId, c.remoteId, 0,
                CmMessages.checkPrivate("RTU", priv, CmMessages.RTU_PRIVATE)).toMad(c.tid);
        c.lastReply = m;
        send(c, m, false);
        c.state = State.ESTABLISHED;
    }

    /**
     * {@code ib_send_cm_rej} ({@code cm_send_rej_locked}): on the passive side from REQ_RCVD or MRA_REQ_SENT, on the
     * active side from REQ_SENT, REP_RCVD or MRA_REP_SENT, each leaving the connection IDLE ({@code cm_reset_to_idle});
     * from REP_SENT it enters time wait, the REP left to the MAD layer as {@code cm_send_rej_locked} leaves it (resent
     * until its retries run out, its timeout then ignored); EINVAL in any other state. The message rejected is as
     * {@code cm_format_rej} names it: the REQ, the REP, or another (a REQ_SENT connection's REJ names no remote ID, as
     * it knows none, so the peer finds nothing it belongs to); a REJ of a REQ received names no local ID either (0, as
     * {@code cm_format_rej} writes it in REQ_RCVD; in MRA_REQ_SENT it names the local ID), the peer's
     * {@code cm_acquire_rejected_id} finding its connection by the remote ID alone. A REQ still waiting for its answer
     * is not cancelled: the MAD layer resends it until its retries run out, and the IDLE connection then ignores the
     * timeout ({@code cm_process_send_error}).
     */
    void sendRej(Conn c, int reason, byte[] priv) {
        int msg = switch (c.state) {
            case REQ_RCVD, MRA_REQ_SENT -> CmMessages.REJ_MSG_REQ;
            case REP_RCVD, MRA_REP_SENT -> CmMessages.REJ_MSG_REP;
            case REQ_SENT, MRA_REQ_RCVD, REP_SENT, MRA_REP_RCVD -> CmMessages.REJ_MSG_OTHER;
            default -> throw new ErrnoException(Errno.EINVAL, "ib_send_cm_rej in " + c.state);
        };
        Mad m = new Rej(c.state == State.REQ_RCVD ? 0 : c.localId, c.remoteId, msg, reason, new byte[0],
                CmMessages.checkPrivate("REJ", priv, CmMessages.REJ_PRIVATE)).toMad(c.tid);
        send(c, m, false);
        c.lastReply = m;
        if (c.state == State.REP_SENT || c.state == State.MRA_REP_RCVD) {
            enterTimewait(c);
        } else {
            resetToIdle(c);
        }
    }

    /** {@code ib_send_cm_dreq}: only when ESTABLISHED. */
    boolean sendDreq(Conn c, byte[] priv) {
        if (c.state != State.ESTABLISHED) {
            return false;
        }
        Mad m = new Ids(CmMessages.ATTR_DREQ, c.localId, c.remoteId, c.remoteQpn,
                CmMessages.checkPrivate("DREQ", priv, CmMessages.DREQ_PRIVATE)).toMad(c.formTid());
        send(c, m, true);
        c.state = State.DREQ_SENT;
        return true;
    }

    /** {@code ib_send_cm_drep}: only in DREQ_RCVD; enters time wait. */
    boolean sendDrep(Conn c, byte[] priv) {
        if (c.state != State.DREQ_RCVD) {
            return false;
        }
        Mad m = new Ids(CmMessages.ATTR_DREP, c.localId, c.remoteId, 0,
                CmMessages.checkPrivate("DREP", priv, CmMessages.DREP_PRIVATE)).toMad(c.tid);
        c.lastReply = m;
        send(c, m, false);
        enterTimewait(c);
        return true;
    }

    /**
     * {@code ib_destroy_cm_id} ({@code cm_destroy_id}): leaves the connection as its state needs (a REQ sent or
     * received is rejected, an established one gets a DREQ, a DREQ received its DREP), cancels the MAD still waiting
     * and leaves the local ID table; no event follows.
     */
    void destroy(Conn c) {
        try {
            switch (c.state) {
                case REQ_SENT, MRA_REQ_RCVD, REP_RCVD -> {
                    cancelWaiting(c);
                    if (c.state == State.REP_RCVD) {
                        sendRej(c, RejectReason.CONSUMER_DEFINED, null);
                    } else {
                        c.agent.send(c.peer, new Rej(c.localId, 0, CmMessages.REJ_MSG_REQ, RejectReason.TIMEOUT,
                                longBytes(c.dev.nodeGuid()), new byte[0]).toMad(c.tid), 0, 0, c);
                    }
                }
                case REQ_RCVD, MRA_REQ_SENT, REP_SENT, MRA_REP_RCVD, MRA_REP_SENT ->
                        sendRej(c, RejectReason.CONSUMER_DEFINED, null);
                case ESTABLISHED -> sendDreq(c, null);
                case DREQ_RCVD -> sendDrep(c, null);
                default -> {
                }
            }
        } catch (ErrnoException e) {
            LOG.debug("cm_destroy_id of {}: {}", c.localId, e.getMessage()); // the device went away meanwhile
        }
        cancelWaiting(c);
        c.owner = null;
        forget(c);
    }

    /** The connection leaves every table ({@code cm_destroy_id}'s {@code xa_erase} and {@code cm_remove_remote}). */
    private void forget(Conn c) {
        byLocalId.remove(c.localId, c);
        removeRemote(c);
    }

    /**
     * {@code cm_remove_remote}: the connection leaves the remote ID and remote QP tables, so that a REQ of that peer
     * or QP is no longer a duplicate or stale; it stays in the local ID table, where the messages naming it find it.
     */
    private void removeRemote(Conn c) {
        if (c.peer != null) {
            byRemoteId.remove(List.of(c.remoteId, c.remoteCaGuid), c);
            byRemoteQpn.remove(List.of(c.remoteCaGuid, c.remoteQpn), c);
        }
    }

    /** {@code cm_reset_to_idle}. */
    private void resetToIdle(Conn c) {
        c.state = State.IDLE;
        removeRemote(c);
    }

    /**
     * {@code ib_cm_init_qp_attr}'s state checks: INIT's attributes from REQ_SENT to ESTABLISHED
     * ({@code cm_init_qp_init_attr}), RTR's and RTS's from REQ_RCVD (or MRA_REQ_SENT) to ESTABLISHED
     * ({@code cm_init_qp_rtr_attr}, {@code cm_init_qp_rts_attr}); EINVAL in any other state (IDLE after a REJ, an error
     * or time wait).
     */
    static void checkInitQpAttr(Conn c, QpState to) {
        boolean ok = switch (c.state) {
            case REQ_SENT, MRA_REQ_RCVD -> to == QpState.INIT;
            case REQ_RCVD, MRA_REQ_SENT, REP_SENT, MRA_REP_RCVD, REP_RCVD, MRA_REP_SENT, ESTABLISHED -> true;
            default -> false;
        };
        if (!ok) {
            throw new ErrnoException(Errno.EINVAL, "ib_cm_init_qp_attr " + to + ": the ib_cm_id " + c.localId
                    + " is " + c.state);
        }
    }

    private static byte[] longBytes(long v) {
        byte[] b = new byte[8];
        for (int i = 0; i < 8; i++) {
            b[i] = (byte) (v >>> (56 - 8 * i));
        }
        return b;
    }

    /**
     * {@code cm_enter_timewait}: out of the remote tables ({@code cm_remove_remote}), TIMEWAIT, and the timer of
     * {@code cm_timewait_handler}, which leaves a connection still in TIMEWAIT IDLE, in the local ID table until
     * {@link #destroy}, and tells its owner TIMEWAIT_EXIT. The MAD waiting is the caller's to cancel, as each caller
     * in {@code cm.c} decides ({@code cm_drep_handler} and {@code cm_rej_handler} cancel the DREQ,
     * {@code cm_send_rej_locked} leaves the REP).
     */
    private void enterTimewait(Conn c) {
        removeRemote(c);
        c.state = State.TIMEWAIT;
        int local = c.localId;
        timers.schedule(() -> {
            synchronized (lock) {
                if (byLocalId.get(local) == c && c.state == State.TIMEWAIT) {
                    c.state = State.IDLE;
                    deliver(c, Event.TIMEWAIT_EXIT, null);
                }
            }
        }, c.timewaitMs, TimeUnit.MILLISECONDS);
    }

    private void deliver(Conn c, Event e, Object msg) {
        Owner o = c.owner;
        if (o != null) {
            o.cmEvent(c, e, msg);
        }
    }

    /** The device leaves ({@code cm_remove_one}): its connections and agents are dropped without a message. */
    void removeDevice(RdmaDevice dev) {
        for (Conn c : new ArrayList<>(byLocalId.values())) {
            if (c.dev == dev) {
                c.msg = null;
                c.owner = null;
                forget(c);
            }
        }
        agents.keySet().removeIf(k -> k.get(0) == dev);
    }

    /** Connections open ({@code rdma res show}: the IB CM ids). */
    int connections() {
        return byLocalId.size();
    }

    /** The CM agent's handler on a device port: MADs and send completions, under the rdma_cm lock. */
    private final class Handler implements MadHandler {
        private final RdmaDevice dev;
        private final int port;

        Handler(RdmaDevice dev, int port) {
            this.dev = dev;
            this.port = port;
        }

        @Override
        public void received(MadAddress from, Mad mad) {
            if (mad.method() != Mad.METHOD_SEND) {
                return;
            }
            synchronized (lock) {
                try {
                    switch (mad.attrId()) {
                        case CmMessages.ATTR_REQ -> onReq(dev, port, from, mad.tid(), Req.of(mad));
                        case CmMessages.ATTR_MRA -> onMra(Ids.of(mad));
                        case CmMessages.ATTR_REP -> onRep(from, mad.tid(), Rep.of(mad));
                        case CmMessages.ATTR_RTU -> onRtu(Ids.of(mad));
                        case CmMessages.ATTR_REJ -> onRej(Rej.of(mad));
                        case CmMessages.ATTR_DREQ -> onDreq(dev, port, from, mad.tid(), Ids.of(mad));
                        case CmMessages.ATTR_DREP -> onDrep(Ids.of(mad));
                        default -> LOG.debug("CM attribute 0x{} ignored", Integer.toHexString(mad.attrId()));
                    }
                } catch (ErrnoException e) {
                    LOG.debug("CM message 0x{} dropped: {}", Integer.toHexString(mad.attrId()), e.getMessage());
                }
            }
        }

        @Override
        public void sendDone(MadSendBuf send, MadSendStatus status, Mad response) {
            if (status != MadSendStatus.TIMEOUT) {
                return;
            }
            synchronized (lock) {
                // cm_process_send_error: the connection from send_buf->context, the send still the one it waits on
                if (!(send.context() instanceof Conn c) || c.msg != send) {
                    return;
                }
                c.msg = null;
                switch (c.state) { // cm_process_send_error
                    case REQ_SENT, MRA_REQ_RCVD -> {
                        resetToIdle(c);
                        deliver(c, Event.REQ_ERROR, null);
                    }
                    case REP_SENT, MRA_REP_RCVD -> {
                        resetToIdle(c);
                        deliver(c, Event.REP_ERROR, null);
                    }
                    case DREQ_SENT -> {
                        enterTimewait(c);
                        deliver(c, Event.DREQ_ERROR, null);
                    }
                    default -> {
                    }
                }
            }
        }
    }

    /**
     * {@code cm_req_handler} ({@code cm_match_req}): a REQ of a peer and ID a connection here already has is a
     * duplicate: {@code cm_dup_req_handler} answers it with an MRA in MRA_REQ_SENT and drops it in any other state (a
     * connection in time wait is no longer in the remote ID table, so its STALE_CONN REJ never comes); one from a
     * remote QP (the REQ's CA GUID and QPN: {@code cm_insert_remote_qpn}) a connection here is being set up or
     * connected with is stale: it is rejected with STALE_CONN ({@code cm_issue_rej}, naming no local ID), and that old
     * connection is disconnected with a DREQ ({@code ib_send_cm_dreq}, which sends one only when ESTABLISHED), its
     * owner told when the DREP or the DREQ's timeout comes; any other REQ makes a connection in REQ_RCVD, in both
     * remote tables, and goes to the listeners.
     */
    private void onReq(RdmaDevice dev, int port, MadAddress from, long tid, Req req) {
        List<Object> rkey = List.of(req.localCommId(), req.localCaGuid());
        Conn dup = byRemoteId.get(rkey);
        MadAgent a = agent(dev, port);
        if (dup != null) {
            if (dup.state == State.MRA_REQ_SENT) {
                sendMra(dup, from, CmMessages.REJ_MSG_REQ);
            }
            return;
        }
        List<Object> qkey = List.of(req.localCaGuid(), req.localQpn());
        Conn stale = byRemoteQpn.get(qkey);
        if (stale != null) { // cm_insert_remote_qpn found a connection of that QP
            a.send(from, new Rej(0, req.localCommId(), CmMessages.REJ_MSG_REQ, RejectReason.STALE_CONN, new byte[0],
                    new byte[0]).toMad(tid), 0, 0, null);
            sendDreq(stale, null);
            return;
        }
        Conn c = create(dev, port, null);
        c.peer = new MadAddress(from.localGid(), from.remoteGid(), from.remoteQpn(), MadAddress.GSI_QKEY, 0,
                req.trafficClass(), req.hopLimit());
        c.tid = tid;
        c.remoteId = req.localCommId();
        c.remoteCaGuid = req.localCaGuid();
        c.remoteQpn = req.localQpn();
        c.timeoutMs = toMs(req.localCmResponseTimeout());
        c.retries = req.maxCmRetries();
        c.timewaitMs = toMs(req.localAckTimeout());
        c.state = State.REQ_RCVD;
        byRemoteId.put(rkey, c);
        byRemoteQpn.put(qkey, c);
        int[] reason = {RejectReason.INVALID_SERVICE_ID};
        Owner o = listeners.request(c, req, reason);
        if (o == null) {
            sendRej(c, reason[0], null);
            forget(c);
            return;
        }
        c.owner = o;
    }

    private Conn byIds(int localId, int remoteId) {
        Conn c = byLocalId.get(localId);
        return c != null && (c.remoteId == remoteId || c.remoteId == 0) ? c : null;
    }

    /**
     * {@code cm_rep_handler}: a REP repeated to a connection that has its REP ({@code cm_dup_rep_handler}, which finds
     * it by both IDs) gets the RTU again when ESTABLISHED, an MRA in MRA_REP_SENT, nothing otherwise. A REP to a
     * connection in REQ_SENT or MRA_REQ_RCVD puts it in the remote ID table (a
     * REP of a peer and ID another connection has there is a duplicate, dropped) and the remote QP table, by the
     * REP's CA GUID and QPN ({@code cm_insert_remote_qpn}). A REP from a QP a connection here is already set up or
     * connected with is stale: {@code cm_issue_rej} rejects it with STALE_CONN, naming the REP, and that old
     * connection is disconnected with a DREQ ({@code ib_send_cm_dreq}: only when ESTABLISHED); the connection the
     * REP was for stays in REQ_SENT, its REQ left to its retries and timeout.
     */
    private void onRep(MadAddress from, long tid, Rep rep) {
        Conn c = byLocalId.get(rep.remoteCommId());
        if (c == null) {
            return;
        }
        if (c.state == State.ESTABLISHED && c.lastReply != null && c.remoteId == rep.localCommId()) {
            c.agent.send(c.peer, c.lastReply, 0, 0, c); // cm_dup_rep_handler: the RTU was lost
            return;
        }
        if (c.state == State.MRA_REP_SENT && c.remoteId == rep.localCommId()) {
            sendMra(c, from, CmMessages.REJ_MSG_REP); // cm_dup_rep_handler: the owner is slow to send its RTU
            return;
        }
        if (c.state != State.REQ_SENT && c.state != State.MRA_REQ_RCVD) {
            return;
        }
        List<Object> rkey = List.of(rep.localCommId(), rep.localCaGuid());
        if (byRemoteId.containsKey(rkey)) {
            return;
        }
        Conn stale = byRemoteQpn.get(List.of(rep.localCaGuid(), rep.localQpn()));
        if (stale != null) {
            c.agent.send(c.peer, new Rej(rep.remoteCommId(), rep.localCommId(), CmMessages.REJ_MSG_REP,
                    RejectReason.STALE_CONN, new byte[0], new byte[0]).toMad(tid), 0, 0, null);
            sendDreq(stale, null);
            return;
        }
        cancelWaiting(c);
        c.remoteId = rep.localCommId();
        c.remoteCaGuid = rep.localCaGuid();
        c.remoteQpn = rep.localQpn();
        c.state = State.REP_RCVD;
        byRemoteId.put(rkey, c);
        byRemoteQpn.put(List.of(c.remoteCaGuid, c.remoteQpn), c);
        deliver(c, Event.REP_RECEIVED, rep);
    }

    /** {@code cm_rtu_handler}. */
    private void onRtu(Ids rtu) {
        Conn c = byIds(rtu.remoteCommId(), rtu.localCommId());
        if (c == null || c.state != State.REP_SENT && c.state != State.MRA_REP_RCVD) {
            return;
        }
        cancelWaiting(c);
        c.state = State.ESTABLISHED;
        deliver(c, Event.RTU_RECEIVED, rtu);
    }

    /**
     * {@code cm_acquire_rejected_id}: the connection a REJ is for. One with reason TIMEOUT (from an end that gave up
     * its REQ) by the sender's ID and the CA GUID of its ARI in the remote ID table; one rejecting a REQ by the ID it
     * names, as long as that connection knows no remote ID yet; any other by both IDs it names.
     */
    private Conn rejected(Rej rej) {
        if (rej.reason() == RejectReason.TIMEOUT) {
            if (rej.ari().length < 8) {
                return null;
            }
            long guid = 0;
            for (int i = 0; i < 8; i++) {
                guid = guid << 8 | (rej.ari()[i] & 0xFF);
            }
            return byRemoteId.get(List.of(rej.localCommId(), guid));
        }
        Conn c = byLocalId.get(rej.remoteCommId());
        int remote = rej.messageRejected() == CmMessages.REJ_MSG_REQ ? 0 : rej.localCommId();
        return c != null && c.remoteId == remote ? c : null;
    }

    /**
     * {@code cm_rej_handler}: a REJ while the connection is set up, connected or disconnecting is REJ_RECEIVED to its
     * owner. Before the REP came (REQ_SENT, REQ_RCVD, MRA_REQ_SENT, REP_SENT, or an MRA_*_RCVD) it goes IDLE, or into
     * time wait when the reason is STALE_CONN; once the REP was received (REP_RCVD, MRA_REP_SENT), established or with
     * its DREQ sent, it enters time wait whatever the reason. The MAD still waiting (REQ, REP or DREQ) is cancelled. In
     * DREQ_RCVD, TIMEWAIT and IDLE a REJ is dropped.
     */
    private void onRej(Rej rej) {
        Conn c = rejected(rej);
        if (c == null) {
            return;
        }
        switch (c.state) {
            case REQ_SENT, MRA_REQ_RCVD, REQ_RCVD, MRA_REQ_SENT, REP_SENT, MRA_REP_RCVD -> {
                cancelWaiting(c);
                if (rej.reason() == RejectReason.STALE_CONN) {
                    enterTimewait(c);
                } else {
                    resetToIdle(c);
                }
            }
            case REP_RCVD, MRA_REP_SENT, ESTABLISHED, DREQ_SENT -> {
                cancelWaiting(c);
                enterTimewait(c);
            }
            default -> {
                return;
            }
        }
        deliver(c, Event.REJ_RECEIVED, rej);
    }

    /**
     * {@code cm_mra_handler}: the peer's MRA ("message received acknowledgement", IBTA 12.6.6) to the REQ in REQ_SENT
     * or to the REP in REP_SENT gives that MAD its service timeout plus the path's ack timeout to wait, for the try
     * now and each retry ({@code ib_modify_mad}), and moves the connection to MRA_REQ_RCVD or MRA_REP_RCVD; it is
     * found as {@code cm_acquire_mraed_id} finds it. Any other MRA is dropped (one in ESTABLISHED answers a LAP, which
     * RoCE has none of), a repeated one too. Its owner gets MRA_RECEIVED.
     */
    private void onMra(Ids mra) {
        int mraed = mra.word() >>> 14; // message MRAed: the REJ's codes (CM_MSG_RESPONSE_*)
        int serviceTimeout = (mra.word() >>> 3) & 0x1F;
        Conn c = byLocalId.get(mra.remoteCommId());
        int remote = mraed == CmMessages.REJ_MSG_REQ ? 0 : mra.localCommId();
        if (c == null || c.remoteId != remote || c.msg == null) {
            return;
        }
        State next = switch (c.state) {
            case REQ_SENT -> mraed == CmMessages.REJ_MSG_REQ ? State.MRA_REQ_RCVD : null;
            case REP_SENT -> mraed == CmMessages.REJ_MSG_REP ? State.MRA_REP_RCVD : null;
            default -> null;
        };
        if (next == null || !c.agent.modify(c.msg, toMs(serviceTimeout) + c.timewaitMs)) {
            return;
        }
        c.state = next;
        deliver(c, Event.MRA_RECEIVED, mra);
    }

    /**
     * {@code cm_dreq_handler}: a DREQ whose remote QPN is not this end's QP is dropped, whatever the state. ESTABLISHED
     * (or REP_SENT or MRA_REP_RCVD, the RTU lost) and DREQ_SENT (both ends disconnect at once) go to DREQ_RCVD with
     * DREQ_RECEIVED, the REP in REP_SENT and the own DREQ in DREQ_SENT cancelled; the DREP is then the owner's to send
     * ({@link #sendDrep}, or {@link #destroy}). In time wait the DREQ is answered again with a DREP (the one sent, or
     * a new one when the time wait came another way, as {@code cm_format_drep} builds it from the connection); in any
     * other state it is dropped, DREQ_RCVD and IDLE after time wait included. A DREQ no connection takes gets the
     * DREP of {@code cm_issue_drep}.
     */
    private void onDreq(RdmaDevice dev, int port, MadAddress from, long tid, Ids dreq) {
        Conn c = byIds(dreq.remoteCommId(), dreq.localCommId());
        if (c == null) {
            agent(dev, port).send(from, new Ids(CmMessages.ATTR_DREP, dreq.remoteCommId(), dreq.localCommId(), 0,
                    new byte[0]).toMad(tid), 0, 0, null);
            return;
        }
        if (dreq.word() != c.localQpn) {
            LOG.debug("DREQ for QPN 0x{} dropped: connection {} has QP 0x{}", Integer.toHexString(dreq.word()),
                    c.localId, Integer.toHexString(c.localQpn));
            return;
        }
        switch (c.state) {
            case ESTABLISHED, REP_SENT, MRA_REP_RCVD, DREQ_SENT -> {
                if (c.state == State.REP_SENT || c.state == State.DREQ_SENT) {
                    cancelWaiting(c); // the REP or the own DREQ; in MRA_REP_RCVD the REP is left to its retries
                }
                c.state = State.DREQ_RCVD;
                c.tid = tid;
                deliver(c, Event.DREQ_RECEIVED, dreq);
            }
            case TIMEWAIT -> {
                Mad drep = c.lastReply != null && c.lastReply.attrId() == CmMessages.ATTR_DREP ? c.lastReply
                        : new Ids(CmMessages.ATTR_DREP, c.localId, c.remoteId, 0, new byte[0]).toMad(c.tid);
                c.agent.send(from, drep, 0, 0, c);
            }
            default -> {
            }
        }
    }

    /**
     * {@code cm_drep_handler}: in DREQ_SENT or DREQ_RCVD the connection enters time wait, its DREQ cancelled, and the
     * owner gets DREP_RECEIVED.
     */
    private void onDrep(Ids drep) {
        Conn c = byIds(drep.remoteCommId(), drep.localCommId());
        if (c == null || c.state != State.DREQ_SENT && c.state != State.DREQ_RCVD) {
            return;
        }
        enterTimewait(c);
        cancelWaiting(c);
        deliver(c, Event.DREP_RECEIVED, drep);
    }
}
