package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.QpStateMachine;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.LinkLayer;
import dev.dmaplane.rdma.verbs.NodeType;
import dev.dmaplane.rdma.verbs.PortAttr;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpAttrMask;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpState;

import java.util.Optional;

/**
 * The checks of a QP's attributes: its capabilities at creation ({@code rxe_qp_chk_cap}), a modify against the
 * current state (the device's state machine: {@code ib_modify_qp_is_ok} through {@link IbQpStates} with the value
 * checks of {@code rxe_qp_chk_attr} and {@code _ib_modify_qp}, or the provider's own machine after the checks Linux
 * makes for every device), and the merge of
 * what a modify carries ({@code rxe_qp_from_attr}).
 */
final class QpAttrChecks {
    private QpAttrChecks() {
    }

    /** {@code rxe_qp_chk_cap}: the send and, without an SRQ, the receive capabilities against the device's. */
    static void checkCap(DeviceAttr a, QpCap cap, boolean onSrq) {
        if (cap.maxSendWr() < 0 || cap.maxSendWr() > a.maxQpWr() || cap.maxSendSge() < 0
                || cap.maxSendSge() > a.maxSendSge() || cap.maxInlineData() < 0
                || cap.maxInlineData() > a.maxInlineData()) {
            throw new ErrnoException(Errno.EINVAL, "QP send capabilities " + cap + " exceed the device's (max_qp_wr "
                    + a.maxQpWr() + ", max_send_sge " + a.maxSendSge() + ", max_inline " + a.maxInlineData() + ")");
        }
        if (!onSrq && (cap.maxRecvWr() < 0 || cap.maxRecvWr() > a.maxQpWr() || cap.maxRecvSge() < 0
                || cap.maxRecvSge() > a.maxRecvSge())) {
            throw new ErrnoException(Errno.EINVAL, "QP receive capabilities " + cap + " exceed the device's (max_qp_wr "
                    + a.maxQpWr() + ", max_recv_sge " + a.maxRecvSge() + ")");
        }
    }

    /**
     * The checks of a modify of {@code qp} in state {@code cur} on port {@code port}; returns the state it leaves the
     * QP in. With the core's IB table ({@link IbQpStates}) they are rxe's ({@code rxe_qp_chk_attr}: the given current
     * state, {@code ib_modify_qp_is_ok}, the attribute values); a provider with a state machine of its own gets only
     * the checks Linux makes above the driver ({@link #checkCore}) before its machine decides, as siw gets only those
     * of {@code uverbs_cmd.c} and {@code _ib_modify_qp} before {@code siw_verbs_modify_qp}.
     */
    static QpState check(DeviceImpl dev, QpImpl qp, QpState cur, int port, QpAttr attr) {
        Optional<QpStateMachine> own = dev.provider.qpStateMachine();
        if (own.isPresent()) {
            checkCore(dev, attr, port);
            return chosen(qp, cur, attr, own.get().next(qp, cur, target(attr, cur), attr));
        }
        if (attr.has(QpAttrMask.CUR_STATE) && attr.curQpState() != cur) {
            throw new ErrnoException(Errno.EINVAL, "qp " + qp.qpNum() + " is in " + cur + ", not in the given current "
                    + "state " + attr.curQpState());
        }
        if ((attr.has(QpAttrMask.STATE) && attr.qpState() == null)) {
            throw new ErrnoException(Errno.EINVAL, "target state is null");
        }
        QpState next = chosen(qp, cur, attr, dev.qpStates().next(qp, cur, target(attr, cur), attr));
        checkValues(dev, attr, port);
        return next;
    }

    /** {@code IB_QP_STATE}, or the current state for a modify without one. */
    private static QpState target(QpAttr attr, QpState cur) {
        return attr.has(QpAttrMask.STATE) ? attr.qpState() : cur;
    }

    /** The state machine's answer, refused when it chose none. */
    private static QpState chosen(QpImpl qp, QpState cur, QpAttr attr, QpState next) {
        if (next == null) {
            throw new ErrnoException(Errno.EINVAL, "qp " + qp.qpNum() + ": the provider's state machine chose no state "
                    + "for " + cur + " -> " + attr.qpState());
        }
        return next;
    }

    /**
     * What Linux checks for every device before the driver sees a modify: {@code modify_qp} in {@code uverbs_cmd.c}
     * ({@code rdma_is_port_valid} for {@code IB_QP_PORT} and the primary path's port, that port being the QP's on the
     * way to RTR and the given port otherwise, {@code IB_QP_CUR_STATE} and {@code IB_QP_STATE} naming a state) and
     * {@code _ib_modify_qp} (an alternate path on InfiniBand only). {@code current} is the QP's port.
     */
    private static void checkCore(DeviceImpl dev, QpAttr a, int current) {
        if ((a.has(QpAttrMask.CUR_STATE) && a.curQpState() == null) || (a.has(QpAttrMask.STATE) && a.qpState() == null)) {
            throw new ErrnoException(Errno.EINVAL, "the current or target state is null (modify_qp: no state)");
        }
        if (a.has(QpAttrMask.PORT)) {
            dev.checkPort(a.portNum());
        }
        if (a.has(QpAttrMask.AV)) {
            if (a.ahAttr() == null) {
                throw new ErrnoException(Errno.EINVAL, "no address vector");
            }
            int dest = a.ahAttr().portNum();
            dev.checkPort(dest);
            int want = a.has(QpAttrMask.STATE) && a.qpState() == QpState.RTR ? current
                    : a.has(QpAttrMask.PORT) ? a.portNum() : dest;
            if (dest != want) {
                throw new ErrnoException(Errno.EINVAL, "the address vector's port " + dest + " is not the QP's port "
                        + want + " (modify_qp)");
            }
        }
        int port = a.has(QpAttrMask.PORT) ? a.portNum() : current;
        if (a.has(QpAttrMask.ALT_PATH)
                && (port < 1 || port > dev.portCount() || dev.portAttrOf(port).linkLayer() != LinkLayer.INFINIBAND)) {
            throw new ErrnoException(Errno.EINVAL, "alternate paths are for InfiniBand ports only (_ib_modify_qp)");
        }
    }

    /** The value checks of {@code rxe_qp_chk_attr} and {@code _ib_modify_qp}; {@code current} is the QP's port. */
    private static void checkValues(DeviceImpl dev, QpAttr a, int current) {
        int mask = a.mask();
        int port = (mask & QpAttrMask.PORT) != 0 ? a.portNum() : current;
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

    /**
     * {@code a} as the driver gets it from {@code _ib_modify_qp}: on an InfiniBand or RoCE port
     * ({@code rdma_ib_or_roce} of the given port, else the QP's) an {@code rq_psn} or {@code sq_psn} wider than 24
     * bits is masked to 24 bits (the BTH's PSN); an iWARP port keeps the whole 32-bit value, as iWARP has no PSNs
     * and the core masks nothing for it.
     */
    static QpAttr psnsFor(DeviceImpl dev, QpAttr a) {
        if (dev.nodeType().transport() == NodeType.Transport.IWARP
                || ((a.rqPsn() & ~0xFF_FFFF) == 0 && (a.sqPsn() & ~0xFF_FFFF) == 0)) {
            return a;
        }
        QpAttr.Builder b = a.toBuilder();
        if (a.has(QpAttrMask.RQ_PSN)) {
            b.rqPsn(a.rqPsn() & 0xFF_FFFF);
        }
        if (a.has(QpAttrMask.SQ_PSN)) {
            b.sqPsn(a.sqPsn() & 0xFF_FFFF);
        }
        return b.build();
    }

    /** {@code base} with every attribute {@code a} carries ({@link #psnsFor} applied to {@code a} before). */
    static QpAttr merge(QpAttr base, QpAttr a) {
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
        if ((m & QpAttrMask.RQ_PSN) != 0) b.rqPsn(a.rqPsn());
        if ((m & QpAttrMask.MAX_QP_RD_ATOMIC) != 0) b.maxRdAtomic(a.maxRdAtomic());
        if ((m & QpAttrMask.MIN_RNR_TIMER) != 0) b.minRnrTimer(a.minRnrTimer());
        if ((m & QpAttrMask.SQ_PSN) != 0) b.sqPsn(a.sqPsn());
        if ((m & QpAttrMask.MAX_DEST_RD_ATOMIC) != 0) b.maxDestRdAtomic(a.maxDestRdAtomic());
        if ((m & QpAttrMask.PATH_MIG_STATE) != 0) b.pathMigState(a.pathMigState());
        if ((m & QpAttrMask.DEST_QPN) != 0) b.destQpn(a.destQpNum());
        return b.without(QpAttrMask.STATE | QpAttrMask.CUR_STATE).build();
    }
}
