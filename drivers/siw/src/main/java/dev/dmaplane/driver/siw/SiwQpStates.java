package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.QpStateMachine;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;

/**
 * siw's QP state machine ({@code siw_verbs_modify_qp} in {@code siw_verbs.c}, {@code siw_qp_modify} and its
 * {@code siw_qp_nextstate_from_*} in {@code siw_qp.c}), which siw runs instead of {@code ib_modify_qp_is_ok}. The
 * requested IB state becomes a siw state ({@code ib_qp_state_to_siw_qp_state}: RESET and INIT are IDLE, SQD is
 * CLOSING, SQE is TERMINATE), the QP's siw state decides, and a query reports the siw state as an IB state
 * ({@code siw_qp_state_to_ib_qp_state}: IDLE is INIT). What siw has no rule for it accepts and leaves as it is.
 */
final class SiwQpStates implements QpStateMachine {
    /** {@code enum siw_qp_state} ({@code siw.h}). */
    enum SiwState {
        IDLE, RTR, RTS, CLOSING, TERMINATE, ERROR;

        /** {@code ib_qp_state_to_siw_qp_state}. */
        static SiwState of(QpState ib) {
            return switch (ib) {
                case RESET, INIT -> IDLE;
                case RTR -> RTR;
                case RTS -> RTS;
                case SQD -> CLOSING;
                case SQE -> TERMINATE;
                case ERR -> ERROR;
            };
        }

        /** {@code siw_qp_state_to_ib_qp_state}. */
        QpState ib() {
            return switch (this) {
                case IDLE -> QpState.INIT;
                case RTR -> QpState.RTR;
                case RTS -> QpState.RTS;
                case CLOSING -> QpState.SQD;
                case TERMINATE -> QpState.SQE;
                case ERROR -> QpState.ERR;
            };
        }
    }

    /** {@code siw_create_qp} leaves a new QP IDLE: INIT to a query. */
    @Override
    public QpState initial() {
        return SiwState.IDLE.ib();
    }

    /** {@code siw_qp_modify}: a switch on the QP's siw state; the ERROR state has no case, so ERROR is final. */
    @Override
    public QpState next(HwQp qp, QpState from, QpState to, QpAttr attr) {
        SiwState cur = SiwState.of(from);
        SiwState want = SiwState.of(to);
        SiwState next = switch (cur) {
            case IDLE, RTR -> fromIdle(qp, cur, want);
            case RTS -> fromRts(qp, want);
            case CLOSING, TERMINATE, ERROR -> cur;
        };
        return next == cur ? from : next.ib();
    }

    /**
     * {@code siw_qp_nextstate_from_idle}: RTS needs the LLP handle (the connected socket) and MPA attributes, which
     * only the connection manager passes ({@code siw_accept}, {@code siw_proc_mpareply}; here
     * {@link HwQp#establish()}), so a {@code modify_qp} to RTS is EINVAL ("no socket"); ERROR is taken; every other
     * target leaves the QP as it is.
     */
    private static SiwState fromIdle(HwQp qp, SiwState cur, SiwState want) {
        return switch (want) {
            case RTS -> throw new ErrnoException(Errno.EINVAL, "siw: qp " + qp.qpNum() + " has no connection: an "
                    + "iWARP QP gets to RTS through the connection manager (siw_qp_nextstate_from_idle: no socket)");
            case ERROR -> SiwState.ERROR;
            default -> cur;
        };
    }

    /** {@code siw_qp_nextstate_from_rts}: ERROR drops the connection; RTS, IDLE and RTR leave the QP as it is. */
    private static SiwState fromRts(HwQp qp, SiwState want) {
        return switch (want) {
            case ERROR -> SiwState.ERROR;
            case CLOSING, TERMINATE -> throw new ErrnoException(Errno.EOPNOTSUPP, "siw: qp " + qp.qpNum() + ": RTS -> "
                    + want.ib() + " (siw's " + want + ") is not modelled");
            default -> SiwState.RTS;
        };
    }
}
