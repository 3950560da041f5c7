package dev.dmaplane.rdma.spi;

import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpState;
import org.osgi.annotation.versioning.ConsumerType;

/**
 * A driver's own QP state machine, for a transport whose {@code modify_qp} does not follow
 * {@code ib_modify_qp_is_ok} ({@code drivers/infiniband/core/verbs.c}): siw maps each IB state to one of its own
 * ({@code ib_qp_state_to_siw_qp_state}), moves between them in {@code siw_qp_modify} and reports its state back as
 * an IB state ({@code siw_qp_state_to_ib_qp_state}), so it accepts transitions the IB table lacks and ignores some
 * it has. The core asks it instead of its table ({@link RdmaProvider#qpStateMachine()}), and for the states that take
 * work requests ({@code siw_post_send} and {@code siw_post_receive} decide by siw's state, rxe's by the IB state). The
 * core keeps the checks {@code uverbs_cmd.c} and {@code _ib_modify_qp} make for every device (port numbers, the
 * range of the states, no alternate path off InfiniBand), the commit (flush on ERR, discard on RESET) and the
 * provider's {@link RdmaProvider#modifyQp} hook, which is called with the state this machine chose; the driver's
 * value checks ({@code rxe_qp_chk_attr}: P_Key index, path MTU, timeouts, RDMA read depths) and the check that
 * {@code IB_QP_CUR_STATE} is the QP's state are the IB table's, which a driver with its own machine does without.
 */
@ConsumerType
public interface QpStateMachine {
    /**
     * The state a QP reports once created, before any {@code modify_qp}: RESET for IB, INIT for siw
     * ({@code siw_create_qp} leaves it IDLE, which {@code siw_query_qp} reports as INIT).
     */
    QpState initial();

    /**
     * The state a {@code modify_qp} asking for {@code to} (its {@code IB_QP_STATE}, or {@code from} when it carries
     * none) with {@code attr} leaves {@code qp} in: {@code to} when the driver makes the transition, {@code from} when
     * it accepts the request and leaves the state as it is, another state where the driver says so. Runs inside
     * {@link RdmaProvider#quiesce} with the QP's modifies serialized; it decides and changes nothing (the
     * {@link RdmaProvider#modifyQp} hook acts).
     *
     * @throws dev.dmaplane.errno.ErrnoException to refuse the modify, with the errno the driver returns; nothing
     *                                           changes
     */
    QpState next(HwQp qp, QpState from, QpState to, QpAttr attr);

    /**
     * A {@code post_send} to {@code qp} in {@code state}, which is not RTS (RTS takes sends on every transport):
     * returns to take the work requests (the core queues them, and flushes them in ERR and SQE), throws to refuse
     * them. Called under the QP's lock, once per work request; it must not block.
     *
     * @throws dev.dmaplane.errno.ErrnoException with the errno the driver's {@code post_send} answers; nothing queued
     */
    void checkPostSend(HwQp qp, QpState state);

    /**
     * A {@code post_recv} to {@code qp} in {@code state}, which is not RTS (RTS takes receives on every transport):
     * returns to take the work requests (queued, and flushed in ERR), throws to refuse them. Called under the QP's
     * lock, once per work request; it must not block.
     *
     * @throws dev.dmaplane.errno.ErrnoException with the errno the driver's {@code post_recv} answers; nothing queued
     */
    void checkPostRecv(HwQp qp, QpState state);
}
