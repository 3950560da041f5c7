package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.HwSrq;
import dev.dmaplane.rdma.spi.RecvResult;
import dev.dmaplane.rdma.spi.RecvWqe;
import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.MigState;
import dev.dmaplane.rdma.verbs.NodeType;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpAttrMask;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.SharedReceiveQueue;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UContext;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A queue pair ({@code rxe_qp.c}): create, the modify_qp state machine, destroy, and completing from its
 * {@link WorkQueues}; the post verbs are {@link QpPost} ({@code rxe_post_send}, {@code rxe_post_recv}). The attribute
 * checks are {@link QpAttrChecks} ({@code rxe_qp_chk_cap}, {@code rxe_qp_chk_attr}), the transitions and the states
 * that take work requests the device's QP state machine ({@code QpStateMachine}; {@link IbQpStates}:
 * {@code ib_modify_qp_is_ok} and rxe's posting rules, unless the provider brings its own), the work-request checks
 * {@link SendWrChecks} ({@code validate_send_wr}, the opcode table of {@code rxe_opcode.c}). {@link #modifyLock}
 * serializes modify and destroy; {@link #lock} guards state and queues (for {@link QpPost} too, which takes it as
 * {@code rxe_verbs.c} takes the QP's locks) and is held while completions are written to the CQs, so each CQ sees a
 * QP's completions in order.
 */
final class QpImpl extends ObjectImpl implements QueuePair, HwQp {
    private static final QpAttr RESET_ATTRS = QpAttr.builder().build();

    final int qpn;
    final QpType type;
    private final PdImpl pd;
    private final CqImpl scq;
    private final CqImpl rcq;
    final SrqImpl srq;
    /** What {@code ibv_create_qp} reported: the capabilities asked for. */
    private final QpCap cap;
    /** What the queues hold ({@code RdmaProvider.qpQueueCap}): enforced at post time, reported by a query. */
    final QpCap queueCap;
    final boolean sqSigAll;
    private final ReentrantLock modifyLock = new ReentrantLock();
    final ReentrantLock lock = new ReentrantLock();
    // written under lock; volatile so that the data path reads them without it
    volatile QpState state;
    private volatile QpAttr attrs = RESET_ATTRS;
    /** {@link #attr()} as last built; cleared by every change of {@code state} or {@code attrs}. */
    private volatile QpAttr snapshot;
    /** The send and receive queues; guarded by {@link #lock}. */
    final WorkQueues queues;
    private boolean sqdNotify;
    private boolean sqDrainedReported;
    private boolean gone;

    private QpImpl(ContextImpl ctx, PdImpl pd, QpInitAttr init, CqImpl scq, CqImpl rcq, SrqImpl srq, QpCap cap,
                   QpCap queueCap) {
        super(ctx, "qp", deps(pd, scq, rcq, srq));
        this.pd = pd;
        this.type = init.qpType();
        this.scq = scq;
        this.rcq = rcq;
        this.srq = srq;
        this.cap = cap;
        this.queueCap = queueCap;
        this.sqSigAll = init.sqSigAll();
        QpState initial = ctx.dev.qpStates().initial(); // RESET, or where the provider's machine puts a new QP
        if (initial == null) {
            throw new ErrnoException(Errno.EINVAL, ctx.dev.name() + ": the provider's QP state machine gives a new QP "
                    + "no state");
        }
        this.state = initial;
        this.qpn = ctx.dev.allocQpn(this);
        this.queues = new WorkQueues(this, qpn, queueCap.maxSendWr(), scq, rcq, srq);
    }

    private static ObjectImpl[] deps(PdImpl pd, CqImpl scq, CqImpl rcq, SrqImpl srq) {
        List<ObjectImpl> d = new ArrayList<>(List.of(pd, scq, rcq));
        if (srq != null) {
            d.add(srq);
        }
        return d.toArray(new ObjectImpl[0]);
    }

    private static CqImpl cq(ContextImpl ctx, Object cq, String which) {
        if (!(cq instanceof CqImpl c)) {
            throw new ErrnoException(Errno.EINVAL, "QP " + which + " CQ is " + (cq == null ? "missing" : "not of this core"));
        }
        c.checkUsable(ctx, which + " cq");
        return c;
    }

    static QpImpl create(ContextImpl ctx, PdImpl pd, QpInitAttr init) {
        DeviceImpl dev = ctx.dev;
        try (UContext.Call c = ctx.enter()) {
            pd.checkUsable(ctx, "pd");
            if (init == null || init.qpType() == null || init.cap() == null) {
                throw new ErrnoException(Errno.EINVAL, "QP init attributes need a type and capabilities");
            }
            CqImpl scq = cq(ctx, init.sendCq(), "send");
            CqImpl rcq = cq(ctx, init.recvCq(), "recv");
            SrqImpl srq = null;
            if (init.srq() != null) {
                if (!(init.srq() instanceof SrqImpl s)) {
                    throw new ErrnoException(Errno.EINVAL, "QP SRQ is not of this core");
                }
                s.checkUsable(ctx, "srq");
                if (s.pd() != pd) {
                    throw new ErrnoException(Errno.EINVAL, "the SRQ is in another PD than the QP");
                }
                srq = s;
            }
            QpCap cap = init.cap();
            QpAttrChecks.checkCap(dev.attr, cap, srq != null);
            if (srq != null) {
                cap = new QpCap(cap.maxSendWr(), 0, cap.maxSendSge(), 0, cap.maxInlineData());
            }
            QpCap queueCap = queueCap(dev, init.qpType(), cap);
            dev.qps.acquire();
            QpImpl qp;
            try {
                qp = new QpImpl(ctx, pd, init, scq, rcq, srq, cap, queueCap);
            } catch (RuntimeException e) {
                dev.qps.release();
                throw e;
            }
            try {
                dev.provider.createQp(qp);
            } catch (RuntimeException e) {
                dev.forgetQp(qp);
                dev.qps.release();
                throw e;
            }
            ctx.register(qp);
            dev.publishQp(qp);
            return qp;
        }
    }

    /** The provider's queues for {@code cap} ({@code RdmaProvider.qpQueueCap}), each capacity at least 0. */
    private static QpCap queueCap(DeviceImpl dev, QpType type, QpCap cap) {
        QpCap q = dev.provider.qpQueueCap(type, cap);
        if (q == null || q.maxSendWr() < 0 || q.maxRecvWr() < 0 || q.maxSendSge() < 0 || q.maxRecvSge() < 0
                || q.maxInlineData() < 0) {
            throw new ErrnoException(Errno.EINVAL, dev.name() + ": the provider made no queues of " + cap + " (" + q
                    + ")");
        }
        return q;
    }

    @Override
    public void modify(QpAttr attr) {
        if (attr == null) {
            throw new ErrnoException(Errno.EINVAL, "no QP attributes");
        }
        boolean doorbell;
        try (UContext.Call c = ctx.enter()) {
            modifyLock.lock();
            try {
                if (isDestroyed()) {
                    throw new ErrnoException(Errno.EINVAL, "qp " + qpn + " was destroyed");
                }
                // the checks, the provider's hook and the commit as one step for the HCA: a provider that dropped
                // its view of the send queue in the hook would otherwise run the QP, still in its old state, behind
                // work it forgot (completing a later request before an earlier one); and the HCA cannot move the QP
                // to ERR between the state the checks read and the commit
                doorbell = dev.provider.quiesce(this, () -> checkAndApply(attr));
            } finally {
                modifyLock.unlock();
            }
            if (doorbell) {
                dev.provider.postSend(this);
            }
        }
    }

    /** {@link QpAttrChecks#check} against the current state, then {@link #apply} with the PSNs the driver gets. */
    private boolean checkAndApply(QpAttr attr) {
        QpState cur = state();
        QpState next = QpAttrChecks.check(dev, this, cur, attrs.portNum(), attr);
        return apply(QpAttrChecks.psnsFor(dev, attr), cur, next);
    }

    /** The provider's modify hook, then the commit; whether the provider must be rung. */
    private boolean apply(QpAttr attr, QpState cur, QpState next) {
        dev.provider.modifyQp(this, attr, cur, next);
        lock.lock();
        try {
            if (state != cur) {
                throw new ErrnoException(Errno.EINVAL, "qp " + qpn + " moved from " + cur + " to " + state
                        + " during the modify");
            }
            return commit(attr, cur, next);
        } finally {
            lock.unlock();
        }
    }

    /** Applies a checked modify under {@link #lock}; whether the provider must be rung (RTS with work waiting). */
    private boolean commit(QpAttr a, QpState cur, QpState next) {
        attrs = QpAttrChecks.merge(attrs, a);
        snapshot = null;
        switch (next) {
            case RESET -> {
                // the work queues are emptied without completions; the QP forgets its attributes
                discardLocked();
                attrs = RESET_ATTRS;
                state = QpState.RESET;
                snapshot = null;
            }
            case ERR -> enterErrorLocked();
            case SQD -> {
                state = QpState.SQD;
                snapshot = null;
                if (cur == QpState.RTS) {
                    sqdNotify = a.has(QpAttrMask.EN_SQD_ASYNC_NOTIFY) && a.enSqdAsyncNotify()
                            && dev.provider.tracksSqDrain();
                    sqDrainedReported = false;
                }
                checkDrainedLocked();
            }
            default -> {
                state = next;
                snapshot = null;
            }
        }
        return state == QpState.RTS && queues.hasUnstarted();
    }

    @Override
    public QpAttr query() {
        try (UContext.Call c = ctx.enter()) {
            return dev.provider.queryQp(this, attr());
        }
    }

    @Override
    public QpAttr attr() {
        QpAttr s = snapshot;
        if (s != null) {
            return s;
        }
        lock.lock();
        try {
            QpAttr a = attrs.toBuilder().state(state).curState(state).cap(queueCap)
                    .sqDraining(state == QpState.SQD && queues.started() > 0 && dev.provider.tracksSqDrain()).build();
            if (state != QpState.SQD) { // sq_draining changes with the send queue: never cached
                snapshot = a;
            }
            return a;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public QpState state() {
        return state;
    }

    @Override
    public boolean establish() {
        if (dev.nodeType().transport() != NodeType.Transport.IWARP) {
            throw new ErrnoException(Errno.EINVAL, "qp " + qpn + ": only an iWARP QP is established by its connection");
        }
        lock.lock();
        try {
            if (state != QpState.INIT && state != QpState.RTR) {
                throw new ErrnoException(Errno.EINVAL, "qp " + qpn + " is in " + state + ": a connection needs INIT or RTR");
            }
            state = QpState.RTS;
            snapshot = null;
            return queues.hasUnstarted();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void postSend(List<? extends SendWr> wrs) {
        QpPost.send(this, wrs, false);
    }

    /** A work request the library posts itself ({@code ibv_bind_mw} of a type 1 window). */
    void postInternal(SendWr wr) {
        QpPost.send(this, List.of(wr), true);
    }

    @Override
    public void postRecv(List<RecvWr> wrs) {
        QpPost.recv(this, wrs);
    }

    // the provider's side

    @Override
    public SendWqe nextSend() {
        lock.lock();
        try {
            return state == QpState.RTS ? queues.startNext() : null;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public boolean completeSend(SendWqe wqe, WcStatus status) {
        if (status == null) {
            throw new ErrnoException(Errno.EINVAL, "null status");
        }
        lock.lock();
        try {
            return completeSendLocked(wqe, status);
        } finally {
            lock.unlock();
        }
    }

    @Override
    public int completeSends(List<? extends SendWqe> wqes) {
        lock.lock();
        try {
            int n = 0;
            for (SendWqe w : wqes) {
                if (completeSendLocked(w, WcStatus.SUCCESS)) {
                    n++;
                }
            }
            return n;
        } finally {
            lock.unlock();
        }
    }

    private boolean completeSendLocked(SendWqe wqe, WcStatus status) {
        if (!(wqe instanceof SendWqeImpl w)) {
            throw new ErrnoException(Errno.EINVAL, "not a send WQE of this core");
        }
        if (w.completed) {
            return false;
        }
        if (queues.oldest() != w) {
            throw new ErrnoException(Errno.EINVAL, w + " is not the oldest outstanding send of qp " + qpn);
        }
        if (!w.started) {
            throw new ErrnoException(Errno.EINVAL, w + " was never started (nextSend)");
        }
        queues.retireOldest(status);
        if (status != WcStatus.SUCCESS && status != WcStatus.WR_FLUSH_ERR
                && dev.provider.completionErrorMovesQp(this, true, status)) {
            // IBTA: a failed send puts an RC QP into error, a UC or UD QP into SQ error
            if (type == QpType.RC) {
                enterErrorLocked();
            } else if (state != QpState.ERR) {
                state = QpState.SQE;
                snapshot = null;
                queues.flushSend();
            }
        } else {
            checkDrainedLocked();
        }
        return true;
    }

    /** A completion was lost to a CQ in error: the QP cannot go on; it enters ERR with QP_FATAL. */
    void lostCompletionLocked() {
        if (state != QpState.ERR && !gone) {
            enterErrorLocked();
            ctx.queueEvent(EventType.QP_FATAL, this, 0);
        }
    }

    @Override
    public int sendInFlight() {
        lock.lock();
        try {
            return queues.started();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public int sendOutstanding() {
        lock.lock();
        try {
            return queues.outstanding();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public RecvWqe takeRecv() {
        lock.lock();
        try {
            if (state != QpState.RTR && state != QpState.RTS && state != QpState.SQD && state != QpState.SQE) {
                return null;
            }
            return queues.takeRecv();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void completeRecv(RecvWqe wqe, RecvResult r) {
        if (r == null || r.status() == null || r.opcode() == null || !r.opcode().isRecv()) {
            throw new ErrnoException(Errno.EINVAL, "a receive completes with a receive opcode and a status");
        }
        lock.lock();
        try {
            if (!queues.completeRecv(wqe, r)) {
                return; // flushed meanwhile
            }
            if (r.status() != WcStatus.SUCCESS && r.status() != WcStatus.WR_FLUSH_ERR
                    && dev.provider.completionErrorMovesQp(this, false, r.status())) {
                enterErrorLocked();
            }
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void enterError() {
        lock.lock();
        try {
            enterErrorLocked();
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void raiseEvent(EventType t) {
        if (t == null || t.scope() != EventType.Scope.QP) {
            throw new ErrnoException(Errno.EINVAL, t + " is not a QP event");
        }
        ctx.queueEvent(t, this, 0);
    }

    private void enterErrorLocked() {
        if (state == QpState.ERR) {
            return;
        }
        state = QpState.ERR;
        snapshot = null;
        queues.flushSend();
        queues.flushRecv();
        if (srq != null && !gone) {
            // IBTA 11.5.2.2: a QP on an SRQ that enters Error reports when it will consume no more WQEs
            ctx.queueEvent(EventType.QP_LAST_WQE_REACHED, this, 0);
        }
    }

    /** The work queues emptied without completions; no SQ drained event pending. */
    private void discardLocked() {
        queues.discard();
        sqdNotify = false;
        sqDrainedReported = false;
    }

    private void checkDrainedLocked() {
        if (state == QpState.SQD && queues.started() == 0 && sqdNotify && !sqDrainedReported) {
            sqDrainedReported = true;
            ctx.queueEvent(EventType.SQ_DRAINED, this, 0);
        }
    }

    @Override
    void release(RemoveReason reason) {
        modifyLock.lock();
        try {
            dev.forgetQp(this);
            dev.provider.destroyQp(this);
            lock.lock();
            try {
                gone = true;
                if (reason == RemoveReason.DRIVER_REMOVE) {
                    // the device is going: what was posted completes with WR_FLUSH_ERR on CQs the user can still poll
                    queues.flushSend();
                    queues.flushRecv();
                } else {
                    discardLocked();
                }
                state = QpState.RESET;
                snapshot = null;
            } finally {
                lock.unlock();
            }
            for (MwImpl w : dev.keys.windows()) {
                w.unbindFrom(this);
            }
            ctx.purgeEvents(this);
            dev.qps.release();
        } finally {
            modifyLock.unlock();
        }
    }

    @Override
    public int qpNum() {
        return qpn;
    }

    @Override
    public QpType type() {
        return type;
    }

    @Override
    public PdImpl pd() {
        return pd;
    }

    @Override
    public CqImpl sendCq() {
        return scq;
    }

    @Override
    public CqImpl recvCq() {
        return rcq;
    }

    @Override
    public Optional<SharedReceiveQueue> srq() {
        return Optional.ofNullable(srq);
    }

    @Override
    public Optional<HwSrq> hwSrq() {
        return Optional.ofNullable(srq);
    }

    @Override
    public QpCap cap() {
        return cap;
    }

    @Override
    public boolean sqSigAll() {
        return sqSigAll;
    }

    @Override
    Map<String, String> resAttrs() {
        Map<String, String> m = new LinkedHashMap<>();
        lock.lock();
        try {
            m.put("lqpn", Integer.toString(qpn));
            if (type.connected() && attrs.has(QpAttrMask.DEST_QPN)) {
                m.put("rqpn", Integer.toString(attrs.destQpNum()));
            }
            m.put("type", type.name());
            m.put("state", state.name());
            m.put("sq-psn", Integer.toString(attrs.sqPsn()));
            m.put("rq-psn", Integer.toString(attrs.rqPsn()));
            m.put("pdn", Integer.toString(pd.pdn()));
            m.put("sq-outstanding", Integer.toString(queues.outstanding()));
            m.put("rq-outstanding", Integer.toString(queues.recvOutstanding()));
            if (srq != null) {
                m.put("srqn", Integer.toString(srq.srqn()));
            }
            if (attrs.has(QpAttrMask.PORT)) {
                m.put("port", Integer.toString(attrs.portNum()));
            }
            if (type == QpType.RC) {
                m.put("path-mig-state", (attrs.has(QpAttrMask.PATH_MIG_STATE) && attrs.pathMigState() != null
                        ? attrs.pathMigState() : MigState.MIGRATED).name());
            }
        } finally {
            lock.unlock();
        }
        return m;
    }
}
