package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.mad.Mad;
import dev.dmaplane.rdma.mad.MadAddress;
import dev.dmaplane.rdma.mad.MadAgent;
import dev.dmaplane.rdma.mad.MadHandler;
import dev.dmaplane.rdma.mad.MadSendBuf;
import dev.dmaplane.rdma.mad.MadSendStatus;
import dev.dmaplane.rdma.spi.MadDatagram;
import dev.dmaplane.rdma.spi.OrderedWorkqueue;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;

/**
 * The MAD layer of one device ({@code drivers/infiniband/core/mad.c}) over the GSI of each port, the special UD QP 1
 * the core owns: agents registered per port, management class and class version; sends leave through the provider
 * ({@link dev.dmaplane.rdma.spi.RdmaProvider#sendMad}) from QP1 with {@link MadAddress#GSI_QKEY} and the P_Key of
 * index 0; a send that waits for a response is retried after each timeout ({@code wait_for_response},
 * {@code ib_mad_complete_send_wr} with {@code retries}) and completed by a response ({@code ib_mad_complete_recv}):
 * one goes to the agent its TID's upper 32 bits name ({@code find_mad_agent}) and answers the first send of that
 * agent still waiting with its TID and class, sent to the GID it comes from ({@code ib_find_send_mad}); or the send
 * ends by a timeout. Each send is its own {@link MadSendBuf}, so sends of one TID (a CM's REP carries its REQ's) wait
 * side by side. Received MADs and completions go to the agents' handlers on the
 * device's MAD thread ({@code ib_mad_completion_handler}'s work queue), started with the first agent and stopped
 * when the device leaves.
 */
final class MadLayer {
    private static final Logger LOG = LoggerFactory.getLogger(MadLayer.class);
    /** The P_Key of table index 0, the port's only entry: the default partition, full member. */
    static final int DEFAULT_PKEY = 0xFFFF;

    private final DeviceImpl dev;
    private final Map<List<Integer>, AgentImpl> agents = new HashMap<>();
    /** The agents by {@code hi_tid}, where responses go ({@code ib_mad_clients}). */
    private final Map<Integer, AgentImpl> byHiTid = new HashMap<>();
    private int nextHiTid = 1;
    private volatile OrderedWorkqueue thread;
    private volatile boolean closed;

    MadLayer(DeviceImpl dev) {
        this.dev = dev;
    }

    synchronized MadAgent register(int port, int mgmtClass, int classVersion, MadHandler handler) {
        ErrnoException.requireNonNull(handler, "MAD handler");
        if (closed) {
            throw new ErrnoException(Errno.ENODEV, dev.name() + " has been unregistered");
        }
        dev.checkPort(port);
        if (mgmtClass <= 0 || mgmtClass > 0xFF || classVersion <= 0 || classVersion > 0xFF) {
            throw new ErrnoException(Errno.EINVAL, "ib_register_mad_agent: class " + mgmtClass + " version "
                    + classVersion + " outside 1..255");
        }
        List<Integer> key = List.of(port, mgmtClass, classVersion);
        if (agents.containsKey(key)) {
            throw new ErrnoException(Errno.EINVAL, "ib_register_mad_agent: " + dev.name() + " port " + port
                    + " class 0x" + Integer.toHexString(mgmtClass) + " version " + classVersion + " already in use");
        }
        if (thread == null) {
            thread = OrderedWorkqueue.alloc("ib_mad-" + dev.name());
        }
        AgentImpl a = new AgentImpl(port, mgmtClass, classVersion, nextHiTid++, handler);
        agents.put(key, a);
        byHiTid.put(a.hiTid, a);
        return a;
    }

    /** A datagram for QP1 from the provider: decoded and queued for the MAD thread, or dropped. */
    void received(MadDatagram d) {
        Mad mad;
        try {
            mad = Mad.decode(d.mad());
        } catch (ErrnoException e) {
            LOG.debug("{}: GSI datagram dropped: {}", dev.name(), e.getMessage());
            return;
        }
        MadAddress from = new MadAddress(d.dgid(), d.sgid(), d.srcQpn(), d.qkey(), 0, d.trafficClass(),
                d.hopLimit());
        // no lock here: the provider calls this with its engine held, and a sender holds this layer's lock while it
        // waits for that engine
        OrderedWorkqueue t = thread;
        if (closed || t == null) {
            // no agent on this device, so no MAD thread: dropped (mad.c would still answer a Get or Set with
            // UNSUPPORTED_METHOD_ATTRIB; here that answer needs the thread an agent starts)
            return;
        }
        try {
            t.execute(() -> dispatch(d.port(), from, mad));
        } catch (RejectedExecutionException e) {
            LOG.debug("{}: MAD dropped, the device is leaving", dev.name());
        }
    }

    /** On the MAD thread: a response completes the send it answers; a request goes to its class's agent. */
    private void dispatch(int port, MadAddress from, Mad mad) {
        if (mad.baseVersion() != Mad.BASE_VERSION) {
            LOG.debug("{}: MAD of base version {} dropped", dev.name(), mad.baseVersion());
            return;
        }
        if (mad.isResponse()) {
            SendBuf sent;
            synchronized (this) {
                AgentImpl a = byHiTid.get((int) (mad.tid() >>> 32));
                sent = a == null || a.port != port ? null : a.answeredBy(from, mad);
                if (sent == null) {
                    return; // no send waits for it (late or duplicate response)
                }
                sent.stopWaiting();
            }
            call(sent.agent, () -> sent.agent.handler.sendDone(sent, MadSendStatus.SUCCESS, mad));
            return;
        }
        AgentImpl a;
        synchronized (this) {
            a = agents.get(List.of(port, mad.mgmtClass(), mad.classVersion()));
        }
        if (a != null) {
            call(a, () -> a.handler.received(from, mad));
        } else if (mad.method() == Mad.METHOD_GET || mad.method() == Mad.METHOD_SET) {
            answerUnmatched(port, from, mad);
        }
    }

    /**
     * {@code generate_unmatched_resp}: a Get or Set no agent takes is answered, as mad.c answers it, with the request
     * turned into a GetResp of status {@code UNSUPPORTED_METHOD_ATTRIB}; other methods are dropped.
     */
    private void answerUnmatched(int port, MadAddress from, Mad mad) {
        Mad resp = new Mad(mad.baseVersion(), mad.mgmtClass(), mad.classVersion(), Mad.METHOD_GET_RESP,
                Mad.STATUS_UNSUPPORTED_METHOD_ATTRIB, mad.classSpecific(), mad.tid(), mad.attrId(), mad.attrMod(),
                mad.data());
        try {
            transmit(port, from, resp);
        } catch (ErrnoException e) {
            LOG.debug("{}: the answer to an unmatched MAD of class 0x{} was not sent: {}", dev.name(),
                    Integer.toHexString(mad.mgmtClass()), e.getMessage());
        }
    }

    private void call(AgentImpl a, Runnable r) {
        if (!a.live) {
            return;
        }
        try {
            r.run();
        } catch (RuntimeException e) {
            LOG.error("{}: the handler of MAD agent 0x{} threw; the MAD is dropped", dev.name(),
                    Integer.toHexString(a.hiTid), e);
        }
    }

    private void transmit(int port, MadAddress to, Mad mad) {
        dev.provider.sendMad(new MadDatagram(port, to.localGid(), to.remoteGid(), 1, to.remoteQpn(), to.qkey(),
                DEFAULT_PKEY, to.trafficClass(), to.hopLimit(), mad.encode()));
    }

    /**
     * The timer {@code generation} of the send fired: sent again while retries are left, else ended with TIMEOUT. A
     * timer that {@link SendBuf#schedule} replaced meanwhile (an {@code ib_modify_mad}) does nothing.
     */
    private void timeout(SendBuf s, int generation) {
        boolean resend;
        synchronized (this) {
            if (!s.agent.waiting.contains(s) || s.generation != generation) {
                return;
            }
            resend = s.retriesLeft > 0;
            if (resend) {
                s.retriesLeft--;
                s.schedule();
            } else {
                s.stopWaiting();
            }
        }
        if (resend) {
            try {
                transmit(s.agent.port, s.to, s.mad); // outside the lock: the provider may wait for its engine
            } catch (ErrnoException e) {
                LOG.debug("{}: MAD resend of tid 0x{} failed: {}", dev.name(), Long.toHexString(s.mad.tid()),
                        e.getMessage());
            }
            return;
        }
        call(s.agent, () -> s.agent.handler.sendDone(s, MadSendStatus.TIMEOUT, null));
    }

    /** The device leaves: every send ends CANCELED, no handler runs afterwards, the MAD thread ends. */
    void shutdown() {
        OrderedWorkqueue t;
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            for (AgentImpl a : agents.values()) {
                a.live = false;
                a.stopAll();
            }
            agents.clear();
            byHiTid.clear();
            t = thread;
        }
        if (t != null) {
            t.destroy(Duration.ofSeconds(10)); // from the MAD thread itself: it ends when this task returns
        }
    }

    /**
     * One send ({@code struct ib_mad_send_wr_private} with its {@code ib_mad_send_buf}): its timeout, retries left
     * and timer are guarded by the layer's lock, and it waits while it is in its agent's {@code waiting} set.
     */
    private final class SendBuf implements MadSendBuf {
        final AgentImpl agent;
        final MadAddress to;
        final Mad mad;
        final Object context;
        int timeoutMs;
        int retriesLeft;
        int generation;
        ScheduledFuture<?> timer;

        SendBuf(AgentImpl agent, MadAddress to, Mad mad, Object context, int timeoutMs, int retries) {
            this.agent = agent;
            this.to = to;
            this.mad = mad;
            this.context = context;
            this.timeoutMs = timeoutMs;
            this.retriesLeft = retries;
        }

        @Override
        public MadAgent agent() {
            return agent;
        }

        @Override
        public MadAddress to() {
            return to;
        }

        @Override
        public Mad mad() {
            return mad;
        }

        @Override
        public Object context() {
            return context;
        }

        /** Its timer, {@code timeoutMs} from now, in place of the one before. Under the layer's lock. */
        void schedule() {
            if (timer != null) {
                timer.cancel(false);
            }
            int g = ++generation;
            timer = thread.schedule(() -> timeout(this, g), timeoutMs, TimeUnit.MILLISECONDS);
        }

        /** It waits no more: out of its agent's set, its timer stopped. Under the layer's lock. */
        void stopWaiting() {
            agent.waiting.remove(this);
            generation++;
            timer.cancel(false);
        }

        @Override
        public String toString() {
            return "MAD send of " + mad + " to " + to.remoteGid();
        }
    }

    private final class AgentImpl implements MadAgent {
        final int port;
        final int mgmtClass;
        final int classVersion;
        final int hiTid;
        final MadHandler handler;
        /** The sends waiting for a response, in the order they were sent ({@code wait_list}). */
        final Set<SendBuf> waiting = new LinkedHashSet<>();
        volatile boolean live = true;

        AgentImpl(int port, int mgmtClass, int classVersion, int hiTid, MadHandler handler) {
            this.port = port;
            this.mgmtClass = mgmtClass;
            this.classVersion = classVersion;
            this.hiTid = hiTid;
            this.handler = handler;
        }

        /**
         * {@code ib_find_send_mad}: the first send waiting with the response's TID and class, sent to the GID the
         * response comes from ({@code rcv_has_same_class}, {@code rcv_has_same_gid}), or null. Under the layer's lock.
         */
        SendBuf answeredBy(MadAddress from, Mad response) {
            for (SendBuf s : waiting) {
                if (s.mad.tid() == response.tid() && s.mad.mgmtClass() == response.mgmtClass()
                        && s.to.remoteGid().equals(from.remoteGid())) {
                    return s;
                }
            }
            return null;
        }

        /** Every send stops waiting, no completion follows ({@code cancel_mads} of an agent going away). */
        void stopAll() {
            for (SendBuf s : waiting) {
                s.generation++;
                s.timer.cancel(false);
            }
            waiting.clear();
        }

        @Override
        public int port() {
            return port;
        }

        @Override
        public int hiTid() {
            return hiTid;
        }

        @Override
        public MadSendBuf send(MadAddress to, Mad mad, int timeoutMs, int retries, Object context) {
            ErrnoException.requireNonNull(to, "MAD address");
            ErrnoException.requireNonNull(mad, "MAD");
            if (timeoutMs < 0 || retries < 0) {
                throw new ErrnoException(Errno.EINVAL, "ib_post_send_mad: timeout " + timeoutMs + " ms, retries "
                        + retries + ": negative");
            }
            SendBuf s = new SendBuf(this, to, mad, context, timeoutMs, retries);
            synchronized (MadLayer.this) {
                if (!live || closed) {
                    throw new ErrnoException(Errno.ENODEV, "MAD agent 0x" + Integer.toHexString(hiTid) + " on "
                            + dev.name() + " is unregistered");
                }
                if (timeoutMs > 0) {
                    waiting.add(s);
                    s.schedule();
                }
            }
            try {
                transmit(port, to, mad); // outside the lock: the provider may wait for its engine
            } catch (ErrnoException e) {
                synchronized (MadLayer.this) {
                    if (waiting.contains(s)) {
                        s.stopWaiting();
                    }
                }
                throw e;
            }
            if (timeoutMs == 0) {
                OrderedWorkqueue t = thread;
                try {
                    t.execute(() -> call(this, () -> handler.sendDone(s, MadSendStatus.SUCCESS, null)));
                } catch (RejectedExecutionException e) {
                    LOG.debug("{}: MAD send completion dropped, the device is leaving", dev.name());
                }
            }
            return s;
        }

        /** The send, when it is one of this agent's still waiting; under the layer's lock. */
        private SendBuf waitingOf(MadSendBuf send) {
            ErrnoException.requireNonNull(send, "MAD send");
            return !closed && send instanceof SendBuf s && s.agent == this && waiting.contains(s) ? s : null;
        }

        @Override
        public boolean cancel(MadSendBuf send) {
            synchronized (MadLayer.this) {
                SendBuf s = waitingOf(send);
                if (s == null) {
                    return false;
                }
                s.stopWaiting();
                thread.execute(() -> call(this, () -> handler.sendDone(s, MadSendStatus.CANCELED, null)));
            }
            return true;
        }

        @Override
        public boolean modify(MadSendBuf send, int timeoutMs) {
            if (timeoutMs < 0) {
                throw new ErrnoException(Errno.EINVAL, "ib_modify_mad: timeout " + timeoutMs + " ms: negative");
            }
            if (timeoutMs == 0) {
                return cancel(send);
            }
            synchronized (MadLayer.this) {
                SendBuf s = waitingOf(send);
                if (s == null) {
                    return false;
                }
                s.timeoutMs = timeoutMs;
                s.schedule();
            }
            return true;
        }

        @Override
        public void unregister() {
            synchronized (MadLayer.this) {
                if (!live) {
                    return;
                }
                live = false;
                agents.remove(List.of(port, mgmtClass, classVersion), this);
                byHiTid.remove(hiTid, this);
                stopAll();
            }
        }
    }
}
