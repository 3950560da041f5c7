package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.mad.Mad;
import dev.dmaplane.rdma.mad.MadAddress;
import dev.dmaplane.rdma.mad.MadAgent;
import dev.dmaplane.rdma.mad.MadHandler;
import dev.dmaplane.rdma.mad.MadSendStatus;
import dev.dmaplane.rdma.spi.MadDatagram;
import dev.dmaplane.rdma.spi.OrderedWorkqueue;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;

/**
 * The MAD layer of one device ({@code drivers/infiniband/core/mad.c}) over the GSI of each port, the special UD QP 1
 * the core owns: agents registered per port, management class and class version; sends leave through the provider
 * ({@link dev.dmaplane.rdma.spi.RdmaProvider#sendMad}) from QP1 with {@link MadAddress#GSI_QKEY} and the P_Key of
 * index 0; a send that waits for a response is retried after each timeout ({@code wait_for_response},
 * {@code ib_mad_complete_send_wr} with {@code retries}) and completed by the response whose transaction ID it
 * carries ({@code find_send_wr}), or by a timeout. Received MADs and completions go to the agents' handlers on the
 * device's MAD thread ({@code ib_mad_completion_handler}'s work queue), started with the first agent and stopped
 * when the device leaves.
 */
final class MadLayer {
    private static final Logger LOG = LoggerFactory.getLogger(MadLayer.class);
    /** The P_Key of table index 0, the port's only entry: the default partition, full member. */
    static final int DEFAULT_PKEY = 0xFFFF;

    private final DeviceImpl dev;
    private final Map<List<Integer>, AgentImpl> agents = new HashMap<>();
    private final Map<Long, Pending> pending = new HashMap<>();
    private int nextHiTid = 1;
    private volatile OrderedWorkqueue thread;
    private volatile boolean closed;

    MadLayer(DeviceImpl dev) {
        this.dev = dev;
    }

    private record Pending(AgentImpl agent, MadAddress to, Mad mad, int timeoutMs, int[] retriesLeft,
                           ScheduledFuture<?>[] timer) {
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
            Pending p;
            synchronized (this) {
                p = pending.get(mad.tid());
                if (p == null || p.agent.port != port || p.agent.mgmtClass != mad.mgmtClass()) {
                    return; // no send waits for it (late or duplicate response)
                }
                pending.remove(mad.tid());
                p.timer[0].cancel(false);
            }
            call(p.agent, () -> p.agent.handler.sendDone(p.mad, MadSendStatus.SUCCESS, mad));
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

    /** The send's timer fired: sent again while retries are left, else ended with TIMEOUT. */
    private void timeout(long tid) {
        Pending p;
        synchronized (this) {
            p = pending.get(tid);
            if (p == null) {
                return;
            }
            if (p.retriesLeft[0] > 0) {
                p.retriesLeft[0]--;
                p.timer[0] = thread.schedule(() -> timeout(tid), p.timeoutMs, TimeUnit.MILLISECONDS);
            } else {
                pending.remove(tid);
                p = new Pending(p.agent, p.to, p.mad, -1, p.retriesLeft, p.timer);
            }
        }
        if (p.timeoutMs >= 0) {
            try {
                transmit(p.agent.port, p.to, p.mad); // outside the lock: the provider may wait for its engine
            } catch (ErrnoException e) {
                LOG.debug("{}: MAD resend of tid 0x{} failed: {}", dev.name(), Long.toHexString(tid), e.getMessage());
            }
            return;
        }
        Pending done = p;
        call(p.agent, () -> done.agent.handler.sendDone(done.mad, MadSendStatus.TIMEOUT, null));
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
            }
            agents.clear();
            for (Pending p : pending.values()) {
                p.timer[0].cancel(false);
            }
            pending.clear();
            t = thread;
        }
        if (t != null) {
            t.destroy(Duration.ofSeconds(10)); // from the MAD thread itself: it ends when this task returns
        }
    }

    private final class AgentImpl implements MadAgent {
        final int port;
        final int mgmtClass;
        final int classVersion;
        final int hiTid;
        final MadHandler handler;
        volatile boolean live = true;

        AgentImpl(int port, int mgmtClass, int classVersion, int hiTid, MadHandler handler) {
            this.port = port;
            this.mgmtClass = mgmtClass;
            this.classVersion = classVersion;
            this.hiTid = hiTid;
            this.handler = handler;
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
        public void send(MadAddress to, Mad mad, int timeoutMs, int retries) {
            ErrnoException.requireNonNull(to, "MAD address");
            ErrnoException.requireNonNull(mad, "MAD");
            if (timeoutMs < 0 || retries < 0) {
                throw new ErrnoException(Errno.EINVAL, "ib_post_send_mad: timeout " + timeoutMs + " ms, retries "
                        + retries + ": negative");
            }
            if (mad.mgmtClass() != mgmtClass) {
                throw new ErrnoException(Errno.EINVAL, "ib_post_send_mad: class 0x"
                        + Integer.toHexString(mad.mgmtClass()) + " through an agent of class 0x"
                        + Integer.toHexString(mgmtClass));
            }
            if (!mad.isResponse() && (int) (mad.tid() >>> 32) != hiTid) {
                throw new ErrnoException(Errno.EINVAL, String.format(
                        "ib_post_send_mad: tid 0x%016x does not carry the agent's hi_tid 0x%08x", mad.tid(), hiTid));
            }
            synchronized (MadLayer.this) {
                if (!live || closed) {
                    throw new ErrnoException(Errno.ENODEV, "MAD agent 0x" + Integer.toHexString(hiTid) + " on "
                            + dev.name() + " is unregistered");
                }
                if (timeoutMs > 0 && pending.containsKey(mad.tid())) {
                    throw new ErrnoException(Errno.EINVAL, String.format("ib_post_send_mad: tid 0x%016x is waiting "
                            + "for its response already", mad.tid()));
                }
                if (timeoutMs > 0) {
                    long tid = mad.tid();
                    ScheduledFuture<?>[] timer = new ScheduledFuture<?>[1];
                    pending.put(tid, new Pending(this, to, mad, timeoutMs, new int[]{retries}, timer));
                    timer[0] = thread.schedule(() -> timeout(tid), timeoutMs, TimeUnit.MILLISECONDS);
                }
            }
            try {
                transmit(port, to, mad); // outside the lock: the provider may wait for its engine
            } catch (ErrnoException e) {
                synchronized (MadLayer.this) {
                    Pending p = pending.remove(mad.tid());
                    if (p != null) {
                        p.timer[0].cancel(false);
                    }
                }
                throw e;
            }
            if (timeoutMs == 0) {
                OrderedWorkqueue t = thread;
                try {
                    t.execute(() -> call(this, () -> handler.sendDone(mad, MadSendStatus.SUCCESS, null)));
                } catch (RejectedExecutionException e) {
                    LOG.debug("{}: MAD send completion dropped, the device is leaving", dev.name());
                }
            }
        }

        @Override
        public boolean cancel(long tid) {
            Pending p;
            synchronized (MadLayer.this) {
                p = pending.get(tid);
                if (p == null || p.agent != this || closed) {
                    return false;
                }
                pending.remove(tid);
                p.timer[0].cancel(false);
                thread.execute(() -> call(this, () -> handler.sendDone(p.mad, MadSendStatus.CANCELED, null)));
            }
            return true;
        }

        @Override
        public boolean modify(long tid, int timeoutMs) {
            if (timeoutMs < 0) {
                throw new ErrnoException(Errno.EINVAL, "ib_modify_mad: timeout " + timeoutMs + " ms: negative");
            }
            if (timeoutMs == 0) {
                return cancel(tid);
            }
            synchronized (MadLayer.this) {
                Pending p = pending.get(tid);
                if (p == null || p.agent != this || closed) {
                    return false;
                }
                p.timer[0].cancel(false);
                pending.put(tid, new Pending(this, p.to, p.mad, timeoutMs, p.retriesLeft, p.timer));
                p.timer[0] = thread.schedule(() -> timeout(tid), timeoutMs, TimeUnit.MILLISECONDS);
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
                List<Long> mine = new ArrayList<>();
                pending.forEach((tid, p) -> {
                    if (p.agent == this) {
                        mine.add(tid);
                        p.timer[0].cancel(false);
                    }
                });
                mine.forEach(pending::remove);
            }
        }
    }
}
