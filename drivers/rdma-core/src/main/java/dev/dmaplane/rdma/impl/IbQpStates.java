package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.QpStateMachine;
import dev.dmaplane.rdma.spi.RdmaProvider;
import dev.dmaplane.rdma.verbs.NodeType;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;

/**
 * The core's QP state machine for a provider without one of its own: {@code ib_modify_qp_is_ok} through
 * {@link QpStateTable}, as rxe calls it from {@code rxe_qp_chk_attr}. A QP starts in RESET. On an RNIC only the
 * transition must exist: an iWARP QP is moved with {@code IB_QP_STATE} and access flags alone
 * ({@code iwcm_init_qp_init_attr}, {@code iwcm_init_qp_rts_attr}), which the table's IB attribute rules would refuse.
 * Work requests follow rxe: sends need RTS or a later state ({@code rxe_post_send}), receives INIT or a later state
 * ({@code rxe_post_recv}).
 */
record IbQpStates(RdmaProvider provider) implements QpStateMachine {
    @Override
    public QpState initial() {
        return QpState.RESET;
    }

    @Override
    public QpState next(HwQp qp, QpState from, QpState to, QpAttr attr) {
        String why = provider.nodeType().transport() == NodeType.Transport.IWARP
                ? (QpStateTable.exists(from, to) ? null : "no transition " + from + " -> " + to)
                : QpStateTable.check(from, to, qp.type(), attr.mask());
        if (why != null) {
            throw new ErrnoException(Errno.EINVAL, "qp " + qp.qpNum() + ": " + why);
        }
        return to;
    }

    /** {@code rxe_post_send}: a QP before RTS ({@code qp_state(qp) < IB_QPS_RTS}) refuses sends with EINVAL. */
    @Override
    public void checkPostSend(HwQp qp, QpState state) {
        if (state == QpState.RESET || state == QpState.INIT || state == QpState.RTR) {
            throw new ErrnoException(Errno.EINVAL, "qp " + qp.qpNum() + " is in " + state + ": sends need RTS");
        }
    }

    /** {@code rxe_post_recv}: a QP in RESET refuses receives with EINVAL; from INIT on they are queued. */
    @Override
    public void checkPostRecv(HwQp qp, QpState state) {
        if (state == QpState.RESET) {
            throw new ErrnoException(Errno.EINVAL, "qp " + qp.qpNum() + " is in RESET");
        }
    }
}
