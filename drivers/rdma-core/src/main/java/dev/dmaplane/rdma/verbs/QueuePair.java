package dev.dmaplane.rdma.verbs;

import org.osgi.annotation.versioning.ProviderType;

import java.util.List;
import java.util.Optional;

/** A queue pair ({@code ibv_create_qp}). */
@ProviderType
public interface QueuePair extends VerbsObject {
    /** The QP number (24 bits). */
    int qpNum();

    QpType type();

    QpState state();

    ProtectionDomain pd();

    CompletionQueue sendCq();

    CompletionQueue recvCq();

    Optional<SharedReceiveQueue> srq();

    /** The capabilities the QP was created with. */
    QpCap cap();

    /** {@code ibv_query_qp}: every attribute the QP holds, with its mask bits. */
    QpAttr query();

    /**
     * {@code ibv_modify_qp}: applies {@code attr} as {@code attr.mask()} says, following {@code ib_modify_qp_is_ok}:
     * the transition from the current state must be allowed, every attribute required by the transition and QP
     * type must be present and none outside the required and optional ones. {@code IB_QP_CUR_STATE} is accepted
     * from RTR, RTS, SQD and SQE only, and must name the state the QP is in (drivers take it on trust; dmaplane
     * checks it). Values are checked against the device and port; alternate paths are refused on RoCE, as
     * {@code _ib_modify_qp} does. Entering RESET empties the queues without completions, ERR flushes them with
     * WR_FLUSH_ERR, SQD lets started sends finish and raises SQ_DRAINED when asked. On failure nothing changes.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL}
     */
    void modify(QpAttr attr);

    /**
     * {@code ibv_post_send}.
     *
     * @throws PostException with {@code EINVAL} (state below RTS, opcode not for this QP type, too many SGEs,
     *                       inline too long, bad atomic, missing UD destination), {@code ENOMEM} (send queue
     *                       full); the requests before {@code badWr} were posted
     */
    void postSend(List<? extends SendWr> wrs);

    default void postSend(SendWr wr) {
        postSend(List.of(wr));
    }

    /**
     * {@code ibv_post_recv}.
     *
     * @throws PostException with {@code EINVAL} (state RESET, QP uses an SRQ, too many SGEs), {@code ENOMEM}
     *                       (receive queue full)
     */
    void postRecv(List<RecvWr> wrs);

    default void postRecv(RecvWr wr) {
        postRecv(List.of(wr));
    }
}
