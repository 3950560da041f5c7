package dev.dmaplane.driver.siw;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.QpStateMachine;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;

import java.util.function.Predicate;

/**
 * siw's QP state machine ({@code siw_verbs_modify_qp} in {@code siw_verbs.c}, {@code siw_qp_modify} and its
 * {@code siw_qp_nextstate_from_*} in {@code siw_qp.c}), which siw runs instead of {@code ib_modify_qp_is_ok}. The
 * requested IB state becomes a siw state ({@code ib_qp_state_to_siw_qp_state}: RESET and INIT are IDLE, SQD is
 * CLOSING, SQE is TERMINATE), the QP's siw state decides, and a query reports the siw state as an IB state
 * ({@code siw_qp_state_to_ib_qp_state}: IDLE is INIT, CLOSING SQD, TERMINATE SQE). What siw has no rule for it
 * accepts and leaves as it is.
 * Work requests are taken by siw's state too ({@code siw_post_send}, {@code siw_post_receive}): ENOTCONN where the
 * QP has no connection to use, a flush in ERROR.
 */
final class SiwQpStates implements QpStateMachine {
    /** Whether a QP's transmit side holds a work request ({@code tx_wqe(qp)->wr_status != SIW_WR_IDLE}). */
    private final Predicate<HwQp> txBusy;

    /** @param txBusy whether a QP's transmit side holds a work request, asked with its engine held off */
    SiwQpStates(Predicate<HwQp> txBusy) {
        this.txBusy = txBusy;
    }

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
            case CLOSING -> fromClosing(want);
            case TERMINATE -> want == SiwState.ERROR ? SiwState.ERROR : cur;
            case ERROR -> cur;
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

    /**
     * {@code siw_qp_nextstate_from_rts}: each of CLOSING, TERMINATE and ERROR drops the connection
     * ({@code siw_qp_cm_drop}); CLOSING is taken only with the transmit side idle, a QP with a work request in hand
     * goes to ERROR instead (its send queue flushed); RTS, IDLE and RTR leave the QP as it is.
     */
    private SiwState fromRts(HwQp qp, SiwState want) {
        return switch (want) {
            case ERROR, TERMINATE -> want;
            case CLOSING -> txBusy.test(qp) ? SiwState.ERROR : SiwState.CLOSING;
            default -> SiwState.RTS;
        };
    }

    /**
     * {@code siw_qp_nextstate_from_close}: IDLE and ERROR are taken, CLOSING stays; for RTS and RTR the function's
     * -ECONNABORTED is dropped by {@code siw_qp_modify}, which returns 0, so they too leave the QP as it is, as
     * TERMINATE does. ({@code siw_qp_nextstate_from_term} takes ERROR only.)
     */
    private static SiwState fromClosing(SiwState want) {
        return switch (want) {
            case IDLE, ERROR -> want;
            default -> SiwState.CLOSING;
        };
    }

    /**
     * {@code siw_post_send}: only an RTS QP sends; ERROR takes the work requests and completes them flushed
     * ({@code siw_sq_flush_wr}, what {@code ib_drain_sq} relies on); IDLE and RTR (and CLOSING and TERMINATE) refuse
     * them with ENOTCONN. A user QP's library writes its work requests into the mapped send queue first and gets the
     * ENOTCONN from the doorbell ({@code siw_db} in rdma-core's {@code providers/siw}), which leaves them in the ring;
     * here a refused work request is not queued, as for a kernel QP.
     */
    @Override
    public void checkPostSend(HwQp qp, QpState state) {
        SiwState s = SiwState.of(state);
        if (s != SiwState.ERROR) {
            throw new ErrnoException(Errno.ENOTCONN, "siw: qp " + qp.qpNum() + " is " + s + " (" + state + "), not "
                    + "RTS: siw_post_send has no connection to send on");
        }
    }

    /**
     * {@code siw_post_receive}: a QP on an SRQ or made without a receive queue takes no receive in any state
     * ({@link #noReceiveQueue}); IDLE, RTR and RTS take receives, so a QP is given its receives before the connection
     * exists; ERROR takes them and completes them flushed ({@code siw_rq_flush_wr}); CLOSING and TERMINATE refuse them
     * with ENOTCONN.
     */
    @Override
    public void checkPostRecv(HwQp qp, QpState state) {
        if (noReceiveQueue(qp)) {
            throw new ErrnoException(Errno.EINVAL, "siw: qp " + qp.qpNum() + " has no receive queue of its own "
                    + "(siw_post_receive: an SRQ, or max_recv_wr 0)");
        }
        SiwState s = SiwState.of(state);
        if (s.compareTo(SiwState.RTS) > 0 && s != SiwState.ERROR) {
            throw new ErrnoException(Errno.ENOTCONN, "siw: qp " + qp.qpNum() + " is " + s + " (" + state + "): "
                    + "siw_post_receive takes receives up to RTS");
        }
    }

    /**
     * {@code siw_post_receive}'s first check, before the state: a QP on an SRQ or whose receive queue has no entry
     * ({@code qp->attrs.rq_size} 0, as {@code siw_create_qp} leaves it for {@code max_recv_wr} 0) refuses every
     * receive with EINVAL.
     */
    static boolean noReceiveQueue(HwQp qp) {
        return qp.hwSrq().isPresent() || qp.cap().maxRecvWr() == 0;
    }
}
