package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.HwSrq;
import dev.dmaplane.rdma.spi.RecvResult;
import dev.dmaplane.rdma.spi.RecvWqe;
import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.AtomicCap;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.LinkLayer;
import dev.dmaplane.rdma.verbs.MwType;
import dev.dmaplane.rdma.verbs.PortAttr;
import dev.dmaplane.rdma.verbs.PostException;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpAttrMask;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SendFlags;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.SharedReceiveQueue;
import dev.dmaplane.rdma.verbs.WcOpcode;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.rdma.verbs.WorkCompletion;
import dev.dmaplane.rdma.verbs.WrOpcode;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UContext;

import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A queue pair: creation checks ({@code rxe_qp_chk_init}, {@code rxe_qp_chk_cap}), the modify_qp state machine
 * ({@code ib_modify_qp_is_ok} plus the value checks of {@code rxe_qp_chk_attr} and {@code _ib_modify_qp}), post-time
 * validation ({@code validate_send_wr} and the opcode table of {@code rxe_opcode.c}), and the work queues the
 * provider drains. {@link #modifyLock} serializes modify and destroy; {@link #lock} guards state and queues and is
 * held while completions are written to the CQs, so each CQ sees a QP's completions in order.
 * <p>Size: over 900 lines, create/modify/destroy, the attribute checks, the work-request checks and the work queues
 * in one class; issue 11 splits it along those seams ({@code rxe_qp.c}, {@code rxe_qp_chk_attr}, {@code rxe_opcode.c}).
 */
final class QpImpl extends ObjectImpl implements QueuePair, HwQp {
    private static final QpAttr RESET_ATTRS = QpAttr.builder().build();

    private final int qpn;
    private final QpType type;
    private final PdImpl pd;
    private final CqImpl scq;
    private final CqImpl rcq;
    private final SrqImpl srq;
    private final QpCap cap;
    private final boolean sqSigAll;
    private final ReentrantLock modifyLock = new ReentrantLock();
    private final ReentrantLock lock = new ReentrantLock();
    // written under lock; volatile so that the data path reads them without it
    private volatile QpState state = QpState.RESET;
    private volatile QpAttr attrs = RESET_ATTRS;
    /** {@link #attr()} as last built; cleared by every change of {@code state} or {@code attrs}. */
    private volatile QpAttr snapshot;
    private final SendWqeImpl[] sq;
    private int sqHead;
    private int sqCount;
    private int sqStarted;
    private final ArrayDeque<RecvWqeImpl> rq = new ArrayDeque<>();
    private final List<RecvWqeImpl> recvTaken = new ArrayList<>();
    private long sendSeq;
    private long recvSeq;
    private boolean sqdNotify;
    private boolean sqDrainedReported;
    private boolean gone;

    private QpImpl(ContextImpl ctx, PdImpl pd, QpInitAttr init, CqImpl scq, CqImpl rcq, SrqImpl srq, QpCap cap) {
        super(ctx, "qp", deps(pd, scq, rcq, srq));
        this.pd = pd;
        this.type = init.qpType();
        this.scq = scq;
        this.rcq = rcq;
        this.srq = srq;
        this.cap = cap;
        this.sqSigAll = init.sqSigAll();
        this.sq = new SendWqeImpl[cap.maxSendWr()];
        this.qpn = ctx.dev.allocQpn(this);
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
            var a = dev.attr;
            if (cap.maxSendWr() < 0 || cap.maxSendWr() > a.maxQpWr() || cap.maxSendSge() < 0
                    || cap.maxSendSge() > a.maxSendSge() || cap.maxInlineData() < 0
                    || cap.maxInlineData() > a.maxInlineData()) {
                throw new ErrnoException(Errno.EINVAL, "QP send capabilities " + cap + " exceed the device's (max_qp_wr "
                        + a.maxQpWr() + ", max_send_sge " + a.maxSendSge() + ", max_inline " + a.maxInlineData() + ")");
            }
            if (srq == null && (cap.maxRecvWr() < 0 || cap.maxRecvWr() > a.maxQpWr() || cap.maxRecvSge() < 0
                    || cap.maxRecvSge() > a.maxRecvSge())) {
                throw new ErrnoException(Errno.EINVAL, "QP receive capabilities " + cap + " exceed the device's (max_qp_wr "
                        + a.maxQpWr() + ", max_recv_sge " + a.maxRecvSge() + ")");
            }
            if (srq != null) {
                cap = new QpCap(cap.maxSendWr(), 0, cap.maxSendSge(), 0, cap.maxInlineData());
            }
            dev.qps.acquire();
            QpImpl qp;
            try {
                qp = new QpImpl(ctx, pd, init, scq, rcq, srq, cap);
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

    /** ib_modify_qp_is_ok and rxe_qp_chk_attr against the current state, then {@link #apply}. */
    private boolean checkAndApply(QpAttr attr) {
        QpState cur = state();
        if (attr.has(QpAttrMask.CUR_STATE) && attr.curQpState() != cur) {
            throw new ErrnoException(Errno.EINVAL, "qp " + qpn + " is in " + cur + ", not in the given current state "
                    + attr.curQpState());
        }
        if ((attr.has(QpAttrMask.STATE) && attr.qpState() == null)) {
            throw new ErrnoException(Errno.EINVAL, "target state is null");
        }
        QpState next = attr.has(QpAttrMask.STATE) ? attr.qpState() : cur;
        String why = QpStateTable.check(cur, next, type, attr.mask());
        if (why != null) {
            throw new ErrnoException(Errno.EINVAL, "qp " + qpn + ": " + why);
        }
        checkValues(attr, next);
        return apply(attr, cur, next);
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

    /** The value checks of {@code rxe_qp_chk_attr} and {@code _ib_modify_qp}. */
    private void checkValues(QpAttr a, QpState next) {
        int mask = a.mask();
        int port = (mask & QpAttrMask.PORT) != 0 ? a.portNum() : attrs.portNum();
        if ((mask & QpAttrMask.PORT) != 0) {
            dev.checkPort(a.portNum());
        }
        PortAttr pa = port >= 1 && port <= dev.portCount() ? dev.portAttrOf(port) : dev.portAttrOf(1);
        if ((mask & QpAttrMask.PKEY_INDEX) != 0 && (a.pkeyIndex() < 0 || a.pkeyIndex() >= pa.pkeyTblLen())) {
            throw new ErrnoException(Errno.EINVAL, "pkey index " + a.pkeyIndex() + " outside the table of " + pa.pkeyTblLen());
        }
        if ((mask & QpAttrMask.ACCESS_FLAGS) != 0 && (a.qpAccessFlags() & ~Access.QP_SUPPORTED) != 0) {
            throw new ErrnoException(Errno.EINVAL, "QP access flags " + Access.toString(a.qpAccessFlags()));
        }
        if ((mask & QpAttrMask.AV) != 0) {
            AhImpl.check(dev, a.ahAttr());
        }
        if ((mask & QpAttrMask.ALT_PATH) != 0 && pa.linkLayer() == LinkLayer.ETHERNET) {
            // _ib_modify_qp: alternate paths and APM are for InfiniBand only, banned on RoCE
            throw new ErrnoException(Errno.EINVAL, "alternate paths are not supported on RoCE");
        }
        if ((mask & QpAttrMask.PATH_MTU) != 0 && (a.pathMtu() == null || a.pathMtu().value() > pa.maxMtu().value())) {
            throw new ErrnoException(Errno.EINVAL, "path MTU " + a.pathMtu() + " exceeds the port's " + pa.maxMtu());
        }
        if ((mask & QpAttrMask.TIMEOUT) != 0 && (a.timeout() < 0 || a.timeout() > 31)) {
            throw new ErrnoException(Errno.EINVAL, "timeout " + a.timeout() + " outside 0..31");
        }
        if ((mask & QpAttrMask.RETRY_CNT) != 0 && (a.retryCnt() < 0 || a.retryCnt() > 7)) {
            throw new ErrnoException(Errno.EINVAL, "retry count " + a.retryCnt() + " outside 0..7");
        }
        if ((mask & QpAttrMask.RNR_RETRY) != 0 && (a.rnrRetry() < 0 || a.rnrRetry() > 7)) {
            throw new ErrnoException(Errno.EINVAL, "RNR retry " + a.rnrRetry() + " outside 0..7");
        }
        if ((mask & QpAttrMask.MIN_RNR_TIMER) != 0 && (a.minRnrTimer() < 0 || a.minRnrTimer() > 31)) {
            throw new ErrnoException(Errno.EINVAL, "min RNR timer " + a.minRnrTimer() + " outside 0..31");
        }
        if ((mask & QpAttrMask.MAX_QP_RD_ATOMIC) != 0 && (a.maxRdAtomic() < 0 || a.maxRdAtomic() > dev.attr.maxQpInitRdAtom())) {
            throw new ErrnoException(Errno.EINVAL, "max_rd_atomic " + a.maxRdAtomic() + " outside 0.." + dev.attr.maxQpInitRdAtom());
        }
        if ((mask & QpAttrMask.MAX_DEST_RD_ATOMIC) != 0 && (a.maxDestRdAtomic() < 0 || a.maxDestRdAtomic() > dev.attr.maxQpRdAtom())) {
            throw new ErrnoException(Errno.EINVAL, "max_dest_rd_atomic " + a.maxDestRdAtomic() + " outside 0.." + dev.attr.maxQpRdAtom());
        }
        if ((mask & QpAttrMask.DEST_QPN) != 0 && (a.destQpNum() & ~0xFF_FFFF) != 0) {
            throw new ErrnoException(Errno.EINVAL, "destination QPN 0x" + Integer.toHexString(a.destQpNum()) + " exceeds 24 bits");
        }
        if ((mask & QpAttrMask.PATH_MIG_STATE) != 0 && a.pathMigState() == null) {
            throw new ErrnoException(Errno.EINVAL, "path migration state is null");
        }
    }

    /** Applies a checked modify under {@link #lock}; whether the provider must be rung (RTS with work waiting). */
    private boolean commit(QpAttr a, QpState cur, QpState next) {
        attrs = merge(attrs, a);
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
                    sqdNotify = a.has(QpAttrMask.EN_SQD_ASYNC_NOTIFY) && a.enSqdAsyncNotify();
                    sqDrainedReported = false;
                }
                checkDrainedLocked();
            }
            default -> {
                state = next;
                snapshot = null;
            }
        }
        return state == QpState.RTS && sqCount > sqStarted;
    }

    /** {@code attrs} with every attribute {@code a} carries (PSNs masked to 24 bits, as ib_core does). */
    private static QpAttr merge(QpAttr base, QpAttr a) {
        QpAttr.Builder b = base.toBuilder();
        int m = a.mask();
        if ((m & QpAttrMask.EN_SQD_ASYNC_NOTIFY) != 0) b.enSqdAsyncNotify(a.enSqdAsyncNotify());
        if ((m & QpAttrMask.ACCESS_FLAGS) != 0) b.accessFlags(a.qpAccessFlags());
        if ((m & QpAttrMask.PKEY_INDEX) != 0) b.pkeyIndex(a.pkeyIndex());
        if ((m & QpAttrMask.PORT) != 0) b.port(a.portNum());
        if ((m & QpAttrMask.QKEY) != 0) b.qkey(a.qkey());
        if ((m & QpAttrMask.AV) != 0) b.av(a.ahAttr());
        if ((m & QpAttrMask.PATH_MTU) != 0) b.pathMtu(a.pathMtu());
        if ((m & QpAttrMask.TIMEOUT) != 0) b.timeout(a.timeout());
        if ((m & QpAttrMask.RETRY_CNT) != 0) b.retryCnt(a.retryCnt());
        if ((m & QpAttrMask.RNR_RETRY) != 0) b.rnrRetry(a.rnrRetry());
        if ((m & QpAttrMask.RQ_PSN) != 0) b.rqPsn(a.rqPsn() & 0xFF_FFFF);
        if ((m & QpAttrMask.MAX_QP_RD_ATOMIC) != 0) b.maxRdAtomic(a.maxRdAtomic());
        if ((m & QpAttrMask.MIN_RNR_TIMER) != 0) b.minRnrTimer(a.minRnrTimer());
        if ((m & QpAttrMask.SQ_PSN) != 0) b.sqPsn(a.sqPsn() & 0xFF_FFFF);
        if ((m & QpAttrMask.MAX_DEST_RD_ATOMIC) != 0) b.maxDestRdAtomic(a.maxDestRdAtomic());
        if ((m & QpAttrMask.PATH_MIG_STATE) != 0) b.pathMigState(a.pathMigState());
        if ((m & QpAttrMask.DEST_QPN) != 0) b.destQpn(a.destQpNum());
        return b.without(QpAttrMask.STATE | QpAttrMask.CUR_STATE).build();
    }

    @Override
    public QpAttr query() {
        try (UContext.Call c = ctx.enter()) {
            return attr();
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
            QpAttr a = attrs.toBuilder().state(state).curState(state).cap(cap)
                    .sqDraining(state == QpState.SQD && sqStarted > 0).build();
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
    public void postSend(List<? extends SendWr> wrs) {
        post(wrs, false);
    }

    /** A work request the library posts itself ({@code ibv_bind_mw} of a type 1 window). */
    void postInternal(SendWr wr) {
        post(List.of(wr), true);
    }

    private void post(List<? extends SendWr> wrs, boolean internal) {
        PostException failure = null;
        boolean doorbell;
        int posted = 0;
        try (UContext.Call c = ctx.enter()) {
            if (isDestroyed()) {
                throw new ErrnoException(Errno.EINVAL, "qp " + qpn + " was destroyed");
            }
            lock.lock();
            try {
                for (SendWr wr : wrs) {
                    try {
                        enqueueLocked(wr, internal);
                        posted++;
                    } catch (ErrnoException e) {
                        failure = new PostException(e.errno(), wr, posted, e.getMessage());
                        break;
                    }
                }
                if (state == QpState.ERR || state == QpState.SQE) {
                    flushSendLocked();
                }
                doorbell = posted > 0 && state == QpState.RTS;
            } finally {
                lock.unlock();
            }
            if (doorbell) {
                dev.provider.postSend(this);
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    /** Opcodes each QP type takes ({@code rxe_wr_opcode_info}); send with invalidate has no UD packet in the IBTA. */
    private static boolean opcodeValid(WrOpcode op, QpType t) {
        return switch (op) {
            case SEND, SEND_WITH_IMM -> true;
            case SEND_WITH_INV, RDMA_WRITE, RDMA_WRITE_WITH_IMM, LOCAL_INV, BIND_MW -> t != QpType.UD;
            case RDMA_READ, ATOMIC_CMP_AND_SWP, ATOMIC_FETCH_AND_ADD -> t == QpType.RC;
        };
    }

    private static boolean inlineCapable(WrOpcode op) {
        return op == WrOpcode.SEND || op == WrOpcode.SEND_WITH_IMM || op == WrOpcode.SEND_WITH_INV
                || op == WrOpcode.RDMA_WRITE || op == WrOpcode.RDMA_WRITE_WITH_IMM;
    }

    /** {@code validate_send_wr} and {@code init_send_wqe}: checks, captures, queues. */
    private void enqueueLocked(SendWr wr, boolean internal) {
        if (wr == null) {
            throw new ErrnoException(Errno.EINVAL, "null work request");
        }
        if (state == QpState.RESET || state == QpState.INIT || state == QpState.RTR) {
            throw new ErrnoException(Errno.EINVAL, "qp " + qpn + " is in " + state + ": sends need RTS");
        }
        WrOpcode op = wr.opcode();
        if (!opcodeValid(op, type)) {
            throw new ErrnoException(Errno.EINVAL, op + " is not valid on a " + type + " QP");
        }
        if ((wr.sendFlags() & ~SendFlags.ALL) != 0) {
            throw new ErrnoException(Errno.EINVAL, "unknown send flags 0x" + Integer.toHexString(wr.sendFlags()));
        }
        if (op.isAtomic() && dev.attr.atomicCap() == AtomicCap.NONE) {
            throw new ErrnoException(Errno.EINVAL, dev.name() + " has no atomics");
        }
        List<Sge> sges = wr.sgList();
        int maxSge = op == WrOpcode.RDMA_READ ? Math.min(cap.maxSendSge(), dev.attr.maxSgeRd()) : cap.maxSendSge();
        if (sges.size() > maxSge) {
            throw new ErrnoException(Errno.EINVAL, sges.size() + " SGEs exceed max_send_sge " + maxSge);
        }
        long length = wr.totalLength();
        if (length > 1L << 31) {
            throw new ErrnoException(Errno.EINVAL, "message length " + length + " exceeds 2 GiB");
        }
        switch (wr) {
            case SendWr.AtomicCmpAndSwp a -> checkAtomic(length, a.remoteAddr());
            case SendWr.AtomicFetchAndAdd a -> checkAtomic(length, a.remoteAddr());
            default -> {
            }
        }
        boolean inline = (wr.sendFlags() & SendFlags.INLINE) != 0;
        if (inline) {
            if (!inlineCapable(op)) {
                throw new ErrnoException(Errno.EINVAL, op + " cannot carry inline data");
            }
            if (length > cap.maxInlineData()) {
                throw new ErrnoException(Errno.EINVAL, "inline length " + length + " exceeds max_inline_data " + cap.maxInlineData());
            }
        }
        AhImpl ah = null;
        if (type == QpType.UD) {
            var ud = switch (wr) {
                case SendWr.Send s -> s.ud();
                case SendWr.SendWithImm s -> s.ud();
                default -> null;
            };
            if (ud == null || !(ud.ah() instanceof AhImpl a)) {
                throw new ErrnoException(Errno.EINVAL, "a UD send needs an address handle of this core");
            }
            a.checkUsable(ctx, "address handle");
            if ((ud.remoteQpn() & ~0xFF_FFFF) != 0) {
                throw new ErrnoException(Errno.EINVAL, "remote QPN 0x" + Integer.toHexString(ud.remoteQpn()) + " exceeds 24 bits");
            }
            ah = a;
        }
        int mwRkey = 0;
        int mrLkey = 0;
        if (wr instanceof SendWr.BindMw b) {
            if (!sges.isEmpty()) {
                throw new ErrnoException(Errno.EINVAL, "a BIND_MW work request carries no SGEs");
            }
            if (!(b.mw() instanceof MwImpl mw) || b.bindInfo() == null) {
                throw new ErrnoException(Errno.EINVAL, "BIND_MW needs a window of this core and bind info");
            }
            mw.checkUsable(ctx, "memory window");
            if (mw.type() == MwType.TYPE_1 && !internal) {
                throw new ErrnoException(Errno.EINVAL, "type 1 windows are bound with ibv_bind_mw, not a BIND_MW work request");
            }
            if (b.bindInfo().mr() != null && !(b.bindInfo().mr() instanceof MrImpl)) {
                throw new ErrnoException(Errno.EINVAL, "BIND_MW to a region not of this core");
            }
            mwRkey = mw.rkey();
            mrLkey = b.bindInfo().mr() == null ? 0 : b.bindInfo().mr().lkey();
        }
        if (sqCount >= sq.length) {
            throw new ErrnoException(Errno.ENOMEM, "send queue of qp " + qpn + " is full (" + sq.length + " work requests)");
        }
        MemorySegment data = inline ? copyInline(sges, length) : null;
        boolean signaled = sqSigAll || (wr.sendFlags() & SendFlags.SIGNALED) != 0;
        SendWqeImpl w = new SendWqeImpl(sendSeq++, wr, signaled, data, ah, mwRkey, mrLkey);
        sq[sqSlot(sqCount)] = w;
        sqCount++;
    }

    private static void checkAtomic(long length, long remoteAddr) {
        if (length != 8) {
            throw new ErrnoException(Errno.EINVAL, "atomic length " + length + " is not 8");
        }
        if ((remoteAddr & 7) != 0) {
            throw new ErrnoException(Errno.EINVAL, "atomic address 0x" + Long.toHexString(remoteAddr) + " is not 8-byte aligned");
        }
    }

    /** Inline data is copied from the caller's memory now; its keys are not looked at. */
    private MemorySegment copyInline(List<Sge> sges, long length) {
        MemorySegment data = MemorySegment.ofArray(new byte[(int) length]);
        long pos = 0;
        for (Sge s : sges) {
            if (s.length() > 0) {
                ctx.mm.read(s.addr(), data.asSlice(pos, s.length()));
                pos += s.length();
            }
        }
        return data.asReadOnly();
    }

    @Override
    public void postRecv(List<RecvWr> wrs) {
        PostException failure = null;
        int posted = 0;
        try (UContext.Call c = ctx.enter()) {
            if (isDestroyed()) {
                throw new ErrnoException(Errno.EINVAL, "qp " + qpn + " was destroyed");
            }
            lock.lock();
            try {
                for (RecvWr wr : wrs) {
                    String why = null;
                    Errno errno = Errno.EINVAL;
                    if (wr == null) {
                        why = "null work request";
                    } else if (state == QpState.RESET) {
                        why = "qp " + qpn + " is in RESET";
                    } else if (srq != null) {
                        why = "qp " + qpn + " receives from an SRQ";
                    } else if (wr.sgList().size() > cap.maxRecvSge()) {
                        why = wr.sgList().size() + " SGEs exceed max_recv_sge " + cap.maxRecvSge();
                    } else if (rq.size() >= cap.maxRecvWr()) {
                        errno = Errno.ENOMEM;
                        why = "receive queue of qp " + qpn + " is full (" + cap.maxRecvWr() + " work requests)";
                    }
                    if (why != null) {
                        failure = new PostException(errno, wr, posted, why);
                        break;
                    }
                    rq.add(new RecvWqeImpl(recvSeq++, wr, false));
                    posted++;
                }
                if (state == QpState.ERR) {
                    flushRecvLocked();
                }
            } finally {
                lock.unlock();
            }
            if (posted > 0) {
                dev.provider.postRecv(this);
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    // the provider's side

    @Override
    public SendWqe nextSend() {
        lock.lock();
        try {
            if (state != QpState.RTS || sqStarted >= sqCount) {
                return null;
            }
            SendWqeImpl w = sq[sqSlot(sqStarted)];
            sqStarted++;
            w.started = true;
            return w;
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
        if (sqCount == 0 || sq[sqHead] != w) {
            throw new ErrnoException(Errno.EINVAL, w + " is not the oldest outstanding send of qp " + qpn);
        }
        if (!w.started) {
            throw new ErrnoException(Errno.EINVAL, w + " was never started (nextSend)");
        }
        popSendLocked();
        sqStarted--;
        if (status != WcStatus.SUCCESS || w.signaled()) {
            pushSendLocked(w, status);
        }
        if (status != WcStatus.SUCCESS && status != WcStatus.WR_FLUSH_ERR) {
            // IBTA: a failed send puts an RC QP into error, a UC or UD QP into SQ error
            if (type == QpType.RC) {
                enterErrorLocked();
            } else if (state != QpState.ERR) {
                state = QpState.SQE;
                snapshot = null;
                flushSendLocked();
            }
        } else {
            checkDrainedLocked();
        }
        return true;
    }

    /** The send-queue ring's slot {@code i} entries after the head ({@code i <= sq.length}), without a division. */
    private int sqSlot(int i) {
        int j = sqHead + i;
        return j >= sq.length ? j - sq.length : j;
    }

    private SendWqeImpl popSendLocked() {
        SendWqeImpl w = sq[sqHead];
        sq[sqHead] = null;
        sqHead = sqSlot(1);
        sqCount--;
        w.completed = true;
        return w;
    }

    private void pushSendLocked(SendWqeImpl w, WcStatus status) {
        WrOpcode op = w.opcode();
        long len = op.isAtomic() ? 8 : w.length();
        WorkCompletion wc = new WorkCompletion(w.wrId(), status, op.completionOpcode(), 0, len, 0, 0, qpn, 0, 0, 0, 0, 0, 0);
        if (!scq.push(wc, false)) {
            lostCompletionLocked();
        }
    }

    /** A completion was lost to a CQ in error: the QP cannot go on; it enters ERR with QP_FATAL. */
    private void lostCompletionLocked() {
        if (state != QpState.ERR && !gone) {
            enterErrorLocked();
            ctx.queueEvent(EventType.QP_FATAL, this, 0);
        }
    }

    @Override
    public int sendInFlight() {
        lock.lock();
        try {
            return sqStarted;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public int sendOutstanding() {
        lock.lock();
        try {
            return sqCount;
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
            RecvWqeImpl w = srq != null ? srq.take() : rq.poll();
            if (w != null) {
                recvTaken.add(w);
            }
            return w;
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
            if (!recvTaken.remove(wqe)) {
                if (wqe instanceof RecvWqeImpl) {
                    return; // flushed meanwhile
                }
                throw new ErrnoException(Errno.EINVAL, "not a receive WQE taken from qp " + qpn);
            }
            WorkCompletion wc = new WorkCompletion(wqe.wrId(), r.status(), r.opcode(), 0, r.byteLen(), r.immData(),
                    r.invalidatedRkey(), qpn, r.srcQp(), r.wcFlags(), r.pkeyIndex(), 0, 0, 0);
            if (!rcq.push(wc, r.solicited())) {
                lostCompletionLocked();
            }
            if (r.status() != WcStatus.SUCCESS && r.status() != WcStatus.WR_FLUSH_ERR) {
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
        flushSendLocked();
        flushRecvLocked();
        if (srq != null && !gone) {
            // IBTA 11.5.2.2: a QP on an SRQ that enters Error reports when it will consume no more WQEs
            ctx.queueEvent(EventType.QP_LAST_WQE_REACHED, this, 0);
        }
    }

    /** Every outstanding send completes with WR_FLUSH_ERR, signaled or not. */
    private void flushSendLocked() {
        while (sqCount > 0) {
            SendWqeImpl w = popSendLocked();
            pushSendLocked(w, WcStatus.WR_FLUSH_ERR);
        }
        sqStarted = 0;
    }

    /** Receives in progress, then queued ones, complete with WR_FLUSH_ERR (an SRQ keeps what it holds). */
    private void flushRecvLocked() {
        List<RecvWqeImpl> all = new ArrayList<>(recvTaken);
        recvTaken.clear();
        all.addAll(rq);
        rq.clear();
        for (RecvWqeImpl w : all) {
            WorkCompletion wc = new WorkCompletion(w.wrId(), WcStatus.WR_FLUSH_ERR, WcOpcode.RECV,
                    0, 0, 0, 0, qpn, 0, 0, 0, 0, 0, 0);
            if (!rcq.push(wc, true)) {
                lostCompletionLocked();
            }
        }
    }

    private void discardLocked() {
        while (sqCount > 0) {
            popSendLocked();
        }
        sqStarted = 0;
        rq.clear();
        recvTaken.clear();
        sqdNotify = false;
        sqDrainedReported = false;
    }

    private void checkDrainedLocked() {
        if (state == QpState.SQD && sqStarted == 0 && sqdNotify && !sqDrainedReported) {
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
                    flushSendLocked();
                    flushRecvLocked();
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
            m.put("sq-outstanding", Integer.toString(sqCount));
            m.put("rq-outstanding", Integer.toString(rq.size() + recvTaken.size()));
            if (srq != null) {
                m.put("srqn", Integer.toString(srq.srqn()));
            }
        } finally {
            lock.unlock();
        }
        return m;
    }
}
