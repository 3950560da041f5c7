package dev.dmaplane.rdma.spi;

import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.WcStatus;
import org.osgi.annotation.versioning.ProviderType;

import java.util.List;
import java.util.Optional;

/**
 * A queue pair as the provider sees it. The core owns the work queues: it validates and queues work requests
 * at post time, then rings {@link RdmaProvider#postSend}; the provider takes entries in order, does the work,
 * and completes them in order. The core turns completions into CQEs (unsignaled successes produce none), moves
 * the QP to ERR (RC) or SQE (UC, UD) on a failed send and to ERR on a failed receive (unless the provider says
 * otherwise, {@link RdmaProvider#completionErrorMovesQp}), and flushes every
 * outstanding entry with {@link WcStatus#WR_FLUSH_ERR} when the QP enters ERR, by modify or by error. All methods
 * are thread-safe; none calls back into the provider.
 */
@ProviderType
public interface HwQp extends HwObject {
    int qpNum();

    QpType type();

    QpState state();

    /**
     * The capabilities the QP was created with, as {@code ibv_create_qp} reports them; its queues hold what
     * {@link RdmaProvider#qpQueueCap} made of them ({@link #attr()}'s {@code cap}).
     */
    QpCap cap();

    /** Whether every send completes with a CQE. */
    boolean sqSigAll();

    HwPd pd();

    HwCq sendCq();

    HwCq recvCq();

    /** The shared receive queue, if the QP uses one. */
    Optional<HwSrq> hwSrq();

    /** The current attributes (port, path MTU, PSNs, destination QPN, Q_Key, access flags, address vector, ...). */
    QpAttr attr();

    /**
     * The next work request to start, or null when none is waiting or the state lets none start (only RTS starts
     * new ones; SQD lets started ones finish).
     */
    SendWqe nextSend();

    /**
     * Completes the oldest outstanding send work request, which must be {@code wqe}.
     *
     * @return false when it was already completed (flushed while the provider worked on it)
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} when {@code wqe} is not the oldest outstanding one
     */
    boolean completeSend(SendWqe wqe, WcStatus status);

    /**
     * Completes {@code wqes}, the oldest outstanding send work requests in order, with SUCCESS: what
     * {@link #completeSend} does for each, in one step (a completer acknowledging a run of messages at once).
     * Those already completed (flushed) are passed over.
     *
     * @return how many were completed now
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} when they are not the oldest outstanding ones, in
     *                                           order; those before the bad one are completed
     */
    default int completeSends(List<? extends SendWqe> wqes) {
        int n = 0;
        for (SendWqe w : wqes) {
            if (completeSend(w, WcStatus.SUCCESS)) {
                n++;
            }
        }
        return n;
    }

    /** Send work requests started and not completed. */
    int sendInFlight();

    /** Send work requests queued and not completed (started or not). */
    int sendOutstanding();

    /**
     * Takes the next receive work request, from the receive queue or the SRQ (raising SRQ_LIMIT_REACHED when the
     * SRQ falls below its armed limit); null when none is there or the state receives nothing (RESET, INIT, ERR).
     */
    RecvWqe takeRecv();

    /**
     * Completes a receive taken with {@link #takeRecv()}; a failed one moves the QP to ERR, unless the provider says
     * otherwise ({@link RdmaProvider#completionErrorMovesQp}).
     */
    void completeRecv(RecvWqe wqe, RecvResult result);

    /**
     * An iWARP QP's connection is up: the provider's connection manager moves the QP from INIT or RTR to RTS, as
     * siw's {@code siw_qp_modify} does with the LLP handle and MPA attributes once the MPA exchange completed
     * ({@code siw_accept}, {@code siw_proc_mpareply}). The provider's own modify hook is not called.
     *
     * @return whether send work requests wait to be started (the provider should start them)
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} when the QP is not in INIT or RTR, or not on an RNIC
     */
    boolean establish();

    /** Moves the QP to ERR, flushing what is outstanding (a fatal error found by the provider). */
    void enterError();

    /** Raises an affiliated asynchronous event on this QP (COMM_EST, QP_FATAL, QP_REQ_ERR, QP_ACCESS_ERR, ...). */
    void raiseEvent(EventType type);
}
