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
 * resent when the peer repeats what they answer; duplicates dropped; a REQ nobody listens for rejected with
 * INVALID_SERVICE_ID, one from a QP still connected or in time wait with STALE_CONN. Every method runs under the
 * rdma_cm's lock, which {@link CmaImpl} holds around calls in and takes for MADs and timers.
 */
final class IbCm {
    private static final Logger LOG = LoggerFactory.getLogger(IbCm.class);

    /** {@code enum ib_cm_state}, the states a connection of this CM takes. */
    enum State { IDLE, REQ_SENT, REQ_RCVD, REP_SENT, REP_RCVD, ESTABLISHED, DREQ_SENT, DREQ_RCVD, TIMEWAIT }

    /** What the CM tells the connection's owner ({@code enum ib_cm_event_type}). */
    enum Event { REQ_ERROR, REP_RECEIVED, RTU_RECEIVED, REJ_RECEIVED, REP_ERROR, DREQ_RECEIVED, DREP_RECEIVED,
        DREQ_ERROR, TIMEWAIT_EXIT }

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
        /** The MAD waiting for its answer (REQ, REP, DREQ), or null. */
        Mad waiting;
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

        long tid() {
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

    private void send(Conn c, Mad m, boolean waits) {
        if (waits) {
            c.waiting = m;
            c.agent.send(c.peer, m, c.timeoutMs, c.retries);
        } else {
            c.agent.send(c.peer, m, 0, 0);
        }
    }

    private void cancelWaiting(Conn c) {
        if (c.waiting != null) {
            c.agent.cancel(c.waiting.tid());
            c.waiting = null;
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
        send(c, req.toMad(c.tid()), true);
        c.state = State.REQ_SENT;
    }

    /** {@code ib_send_cm_rep}. */
    void sendRep(Conn c, Rep rep) {
        if (c.state != State.REQ_RCVD) {
            throw new ErrnoException(Errno.EINVAL, "ib_send_cm_rep in " + c.state);
        }
        CmMessages.checkPrivate("REP", rep.priv(), CmMessages.REP_PRIVATE);
        send(c, rep.toMad(c.tid()), true);
        c.state = State.REP_SENT;
    }

    /** {@code ib_send_cm_rtu}. */
    void sendRtu(Conn c, byte[] priv) {
        if (c.state != State.REP_RCVD) {
            throw new ErrnoException(Errno.EINVAL, "ib_send_cm_rtu in " + c.state);
        }
        Mad m = new Ids(CmMessages.ATTR_RTU, c.localId, c.remoteId, 0,
                CmMessages.checkPrivate("RTU", priv, CmMessages.RTU_PRIVATE)).toMad(c.tid());
        c.lastReply = m;
        send(c, m, false);
        c.state = State.ESTABLISHED;
        byRemoteQpn.put(List.of(c.peer.remoteGid(), c.remoteQpn), c);
    }

    /**
     * {@code ib_send_cm_rej} ({@code cm_send_rej_locked}): on the passive side from REQ_RCVD, on the active side
     * from REQ_SENT or REP_RCVD, each leaving the connection IDLE ({@code cm_reset_to_idle}); from REP_SENT it enters
     * time wait; EINVAL in any other state. The message rejected is as {@code cm_format_rej} names it: the REQ, the
     * REP, or another (a REQ_SENT connection's REJ names no remote ID, as it knows none, so the peer finds nothing
     * it belongs to). A REQ still waiting for its answer is not cancelled: the MAD layer resends it until its retries
     * run out, and the IDLE connection then ignores the timeout ({@code cm_process_send_error}).
     */
    void sendRej(Conn c, int reason, byte[] priv) {
        int msg = switch (c.state) {
            case REQ_RCVD -> CmMessages.REJ_MSG_REQ;
            case REP_RCVD -> CmMessages.REJ_MSG_REP;
            case REQ_SENT, REP_SENT -> CmMessages.REJ_MSG_OTHER;
            default -> throw new ErrnoException(Errno.EINVAL, "ib_send_cm_rej in " + c.state);
        };
        Mad m = new Rej(c.localId, c.remoteId, msg, reason, new byte[0],
                CmMessages.checkPrivate("REJ", priv, CmMessages.REJ_PRIVATE)).toMad(c.tid());
        send(c, m, false);
        c.lastReply = m;
        if (c.state == State.REP_SENT) {
            enterTimewait(c);
        } else {
            c.state = State.IDLE;
        }
    }

    /** {@code ib_send_cm_dreq}: only when ESTABLISHED. */
    boolean sendDreq(Conn c, byte[] priv) {
        if (c.state != State.ESTABLISHED) {
            return false;
        }
        Mad m = new Ids(CmMessages.ATTR_DREQ, c.localId, c.remoteId, c.remoteQpn,
                CmMessages.checkPrivate("DREQ", priv, CmMessages.DREQ_PRIVATE)).toMad(c.tid());
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
                CmMessages.checkPrivate("DREP", priv, CmMessages.DREP_PRIVATE)).toMad(c.tid());
        c.lastReply = m;
        send(c, m, false);
        enterTimewait(c);
        return true;
    }

    /**
     * {@code ib_destroy_cm_id} ({@code cm_destroy_id}): leaves the connection as its state needs (a REQ sent or
     * received is rejected, an established one gets a DREQ, a DREQ received its DREP) and forgets it; no event follows.
     */
    void destroy(Conn c) {
        try {
            switch (c.state) {
                case REQ_SENT, REP_RCVD -> {
                    cancelWaiting(c);
                    if (c.state == State.REP_RCVD) {
                        sendRej(c, RejectReason.CONSUMER_DEFINED, null);
                    } else {
                        c.agent.send(c.peer, new Rej(c.localId, 0, CmMessages.REJ_MSG_REQ, RejectReason.TIMEOUT,
                                longBytes(c.dev.nodeGuid()), new byte[0]).toMad(c.tid()), 0, 0);
                    }
                }
                case REQ_RCVD, REP_SENT -> sendRej(c, RejectReason.CONSUMER_DEFINED, null);
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

    /**
     * The connection leaves the CM's tables; its owner may keep it, IDLE, until {@link #destroy}. Unlike
     * {@code cm.c}, which keeps an ib_cm_id in its local ID table until {@code ib_destroy_cm_id} (a DREQ repeated
     * after time wait finds it IDLE and is dropped), the CM forgets it at the end of time wait: a repeated DREQ then
     * gets the DREP {@code cm_issue_drep} gives one nobody knows.
     */
    private void forget(Conn c) {
        byLocalId.remove(c.localId, c);
        if (c.peer != null) {
            byRemoteId.remove(List.of(c.remoteId, c.remoteCaGuid), c);
            byRemoteQpn.remove(List.of(c.peer.remoteGid(), c.remoteQpn), c);
        }
    }

    /**
     * {@code ib_cm_init_qp_attr}'s state checks: INIT's attributes from REQ_SENT to ESTABLISHED
     * ({@code cm_init_qp_init_attr}), RTR's and RTS's from REQ_RCVD to ESTABLISHED ({@code cm_init_qp_rtr_attr},
     * {@code cm_init_qp_rts_attr}); EINVAL in any other state (IDLE after a REJ, an error or time wait).
     */
    static void checkInitQpAttr(Conn c, QpState to) {
        boolean ok = switch (c.state) {
            case REQ_SENT -> to == QpState.INIT;
            case REQ_RCVD, REP_SENT, REP_RCVD, ESTABLISHED -> true;
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

    private void enterTimewait(Conn c) {
        cancelWaiting(c);
        c.state = State.TIMEWAIT;
        int local = c.localId;
        timers.schedule(() -> {
            synchronized (lock) {
                Conn now = byLocalId.get(local);
                if (now == c && c.state == State.TIMEWAIT) { // cm_timewait_handler
                    c.state = State.IDLE;
                    forget(c);
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
                c.waiting = null;
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
                        case CmMessages.ATTR_REQ -> onReq(dev, port, from, Req.of(mad));
                        case CmMessages.ATTR_REP -> onRep(Rep.of(mad));
                        case CmMessages.ATTR_RTU -> onRtu(Ids.of(mad));
                        case CmMessages.ATTR_REJ -> onRej(Rej.of(mad));
                        case CmMessages.ATTR_DREQ -> onDreq(dev, port, from, Ids.of(mad));
                        case CmMessages.ATTR_DREP -> onDrep(Ids.of(mad));
                        default -> LOG.debug("CM attribute 0x{} ignored", Integer.toHexString(mad.attrId()));
                    }
                } catch (ErrnoException e) {
                    LOG.debug("CM message 0x{} dropped: {}", Integer.toHexString(mad.attrId()), e.getMessage());
                }
            }
        }

        @Override
        public void sendDone(Mad sent, MadSendStatus status, Mad response) {
            if (status != MadSendStatus.TIMEOUT) {
                return;
            }
            synchronized (lock) {
                Conn c = byLocalId.get((int) sent.tid());
                if (c == null || c.waiting == null || c.waiting.tid() != sent.tid()
                        || c.waiting.attrId() != sent.attrId()) {
                    return;
                }
                c.waiting = null;
                switch (c.state) { // cm_process_send_error
                    case REQ_SENT -> {
                        c.state = State.IDLE;
                        deliver(c, Event.REQ_ERROR, null);
                    }
                    case REP_SENT -> {
                        c.state = State.IDLE;
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

    /** {@code cm_req_handler}. */
    private void onReq(RdmaDevice dev, int port, MadAddress from, Req req) {
        List<Object> rkey = List.of(req.localCommId(), req.localCaGuid());
        Conn dup = byRemoteId.get(rkey);
        MadAgent a = agent(dev, port);
        if (dup != null) { // cm_dup_req_handler
            if (dup.state == State.TIMEWAIT) {
                a.send(from, new Rej(dup.localId, req.localCommId(), CmMessages.REJ_MSG_REQ, RejectReason.STALE_CONN,
                        new byte[0], new byte[0]).toMad(dup.tid()), 0, 0);
            }
            return;
        }
        Conn stale = byRemoteQpn.get(List.of(from.remoteGid(), req.localQpn()));
        if (stale != null) { // cm_insert_remote_qpn found a connection of that QP
            a.send(from, new Rej(0, req.localCommId(), CmMessages.REJ_MSG_REQ, RejectReason.STALE_CONN, new byte[0],
                    new byte[0]).toMad((long) a.hiTid() << 32), 0, 0);
            return;
        }
        Conn c = create(dev, port, null);
        c.peer = new MadAddress(from.localGid(), from.remoteGid(), from.remoteQpn(), MadAddress.GSI_QKEY, 0,
                req.trafficClass(), req.hopLimit());
        c.remoteId = req.localCommId();
        c.remoteCaGuid = req.localCaGuid();
        c.remoteQpn = req.localQpn();
        c.timeoutMs = toMs(req.localCmResponseTimeout());
        c.retries = req.maxCmRetries();
        c.timewaitMs = toMs(req.localAckTimeout());
        c.state = State.REQ_RCVD;
        byRemoteId.put(rkey, c);
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

    /** {@code cm_rep_handler}. */
    private void onRep(Rep rep) {
        Conn c = byLocalId.get(rep.remoteCommId());
        if (c == null) {
            return;
        }
        if (c.state == State.ESTABLISHED && c.lastReply != null && c.remoteId == rep.localCommId()) {
            c.agent.send(c.peer, c.lastReply, 0, 0); // cm_dup_rep_handler: the RTU was lost
            return;
        }
        if (c.state != State.REQ_SENT) {
            return;
        }
        cancelWaiting(c);
        c.remoteId = rep.localCommId();
        c.remoteCaGuid = rep.localCaGuid();
        c.remoteQpn = rep.localQpn();
        c.state = State.REP_RCVD;
        byRemoteId.put(List.of(c.remoteId, c.remoteCaGuid), c);
        deliver(c, Event.REP_RECEIVED, rep);
    }

    /** {@code cm_rtu_handler}. */
    private void onRtu(Ids rtu) {
        Conn c = byIds(rtu.remoteCommId(), rtu.localCommId());
        if (c == null || c.state != State.REP_SENT) {
            return;
        }
        cancelWaiting(c);
        c.state = State.ESTABLISHED;
        byRemoteQpn.put(List.of(c.peer.remoteGid(), c.remoteQpn), c);
        deliver(c, Event.RTU_RECEIVED, rtu);
    }

    /**
     * {@code cm_rej_handler}. A REJ with reason TIMEOUT from an end that gave up its REQ names no remote ID: it is
     * found by the sender's ID and the CA GUID in its ARI ({@code cm_acquire_rejected_id}).
     */
    private void onRej(Rej rej) {
        Conn c = byLocalId.get(rej.remoteCommId());
        if (rej.remoteCommId() == 0 && rej.reason() == RejectReason.TIMEOUT && rej.ari().length == 8) {
            long guid = 0;
            for (byte b : rej.ari()) {
                guid = guid << 8 | (b & 0xFF);
            }
            c = byRemoteId.get(List.of(rej.localCommId(), guid));
        }
        if (c == null) {
            return;
        }
        switch (c.state) {
            case REQ_SENT, REQ_RCVD, REP_SENT, REP_RCVD -> {
                cancelWaiting(c);
                if (rej.reason() == RejectReason.STALE_CONN) {
                    enterTimewait(c);
                } else {
                    c.state = State.IDLE;
                    forget(c);
                }
                deliver(c, Event.REJ_RECEIVED, rej);
            }
            default -> {
            }
        }
    }

    /** {@code cm_dreq_handler}. */
    private void onDreq(RdmaDevice dev, int port, MadAddress from, Ids dreq) {
        Conn c = byIds(dreq.remoteCommId(), dreq.localCommId());
        if (c == null) { // cm_issue_drep: nobody knows it, the peer still gets its DREP
            MadAgent a = agent(dev, port);
            a.send(from, new Ids(CmMessages.ATTR_DREP, dreq.remoteCommId(), dreq.localCommId(), 0, new byte[0])
                    .toMad((long) a.hiTid() << 32), 0, 0);
            return;
        }
        switch (c.state) {
            case ESTABLISHED, REP_SENT -> {
                cancelWaiting(c);
                c.state = State.DREQ_RCVD;
                deliver(c, Event.DREQ_RECEIVED, dreq);
            }
            case DREQ_SENT -> { // both ends disconnect at once: answer, and wait for the time wait
                c.state = State.DREQ_RCVD;
                sendDrep(c, null);
                deliver(c, Event.DREQ_RECEIVED, dreq);
            }
            case TIMEWAIT -> {
                if (c.lastReply != null && c.lastReply.attrId() == CmMessages.ATTR_DREP) {
                    c.agent.send(c.peer, c.lastReply, 0, 0); // the DREP was lost
                }
            }
            default -> {
            }
        }
    }

    /** {@code cm_drep_handler}. */
    private void onDrep(Ids drep) {
        Conn c = byIds(drep.remoteCommId(), drep.localCommId());
        if (c == null || c.state != State.DREQ_SENT) {
            return;
        }
        enterTimewait(c);
        deliver(c, Event.DREP_RECEIVED, drep);
    }
}
