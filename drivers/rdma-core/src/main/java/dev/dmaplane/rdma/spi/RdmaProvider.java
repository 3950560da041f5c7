package dev.dmaplane.rdma.spi;

import dev.dmaplane.device.Device;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.NodeType;
import dev.dmaplane.rdma.verbs.PortAttr;
import dev.dmaplane.rdma.verbs.QpAttr;
import dev.dmaplane.rdma.verbs.QpCap;
import dev.dmaplane.rdma.verbs.QpState;
import dev.dmaplane.rdma.verbs.QpType;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.SrqAttr;
import dev.dmaplane.rdma.verbs.WcStatus;
import org.osgi.annotation.versioning.ConsumerType;

import java.util.LinkedHashMap;
import java.util.Optional;
import java.util.SequencedMap;
import java.util.function.Supplier;

/**
 * What an HCA driver implements to put an RDMA device under the core ({@code struct ib_device_ops}). The core
 * does what {@code ib_core} and {@code ib_uverbs} do: handles, limits, validation of every verb, user memory
 * (pinning, DMA mapping through {@link #dmaDevice()}, page size choice, on-demand faulting), keys, the modify_qp
 * state machine, work queue bookkeeping, CQ rings and notification, async events, disassociation. The provider
 * does what the hardware does: move bytes and complete work.
 *
 * <p><b>Control hooks</b> ({@code allocPd} ... {@code destroyAh}) run after the core validated the call and
 * before it commits; a create or modify hook may refuse by throwing an {@link dev.dmaplane.errno.ErrnoException}
 * (nothing changes then). Destroy hooks must not throw: they run on user destroy, context close and device
 * removal, and must stop every use of the object (worker threads included) before returning. Hooks run without
 * core locks held, so they may wait for the provider's own threads; they must not call
 * {@link RdmaDeviceHandle#unregister()}, which waits for the calls in flight they are part of.
 *
 * <p><b>Data-path hooks</b>: {@link #postSend} and {@link #postRecv} are doorbells rung after work requests were
 * queued; a poll reads CQ memory without entering the provider, except that {@link #pollCq} runs on every poll for
 * a provider that progresses lazily ({@link #progressesOnPoll}) and does its work there;
 * {@link #reqNotifyCq} tells a provider that a CQ was armed. The provider reaches work and memory through
 * {@link HwQp} and {@link MemoryAccess} ({@link RdmaDeviceHandle#memory()}).
 */
@ConsumerType
public interface RdmaProvider {
    /** The driver's name ({@code ibv_devinfo}'s transport/driver, e.g. {@code rdma_rxe}). */
    String driverName();

    /** The device whose DMA API maps registered memory and whose bus master moves the bytes. */
    Device dmaDevice();

    /** {@code query_device}: the device's limits. Read once at registration. */
    DeviceAttr deviceAttr();

    /**
     * {@code ib_device.node_type}: a channel adapter (InfiniBand, RoCE; the default) or an iWARP RNIC. On an RNIC
     * without a {@link #qpStateMachine()} of its own the core leaves the QP state machine's IB attribute rules
     * ({@code ib_modify_qp_is_ok}) out, as only IB transports apply them: an iWARP QP is moved with
     * {@code IB_QP_STATE} (and access flags) alone, its connection comes from {@link #iwCm()}.
     */
    default NodeType nodeType() {
        return NodeType.CA;
    }

    /**
     * The driver's own QP state machine, which the core asks instead of {@code ib_modify_qp_is_ok} (as siw's
     * {@code siw_qp_modify} decides alone, where rxe calls {@code ib_modify_qp_is_ok}); empty (the default) for
     * the core's IB table. Asked at every QP create and modify.
     */
    default Optional<QpStateMachine> qpStateMachine() {
        return Optional.empty();
    }

    /**
     * {@code iw_cm_verbs}: the connection manager of an iWARP device, through which its QPs get their connections
     * ({@code drivers/infiniband/core/iwcm.c} calls it); empty for IB and RoCE devices.
     */
    default Optional<IwCm> iwCm() {
        return Optional.empty();
    }

    /** {@code query_port}, 1-based; called on every query. */
    PortAttr portAttr(int port);

    /** The network device under a RoCE port; read at registration and on {@link RdmaDeviceHandle#netdevChanged}. */
    NetdevInfo netdev(int port);

    default void allocPd(HwPd pd) {
    }

    default void deallocPd(HwPd pd) {
    }

    default void createCq(HwCq cq) {
    }

    default void resizeCq(HwCq cq, int cqe) {
    }

    default void destroyCq(HwCq cq) {
    }

    /**
     * The capacities of the work queues {@code create_qp} makes for a QP of {@code type} asked to have
     * {@code requested} (checked against {@link #deviceAttr()} already; with an SRQ its receive sizes are 0): how many
     * work requests each queue holds, how many SGEs a request may name and how many inline bytes a send may carry,
     * which the core enforces at post time and reports as the capabilities in a query ({@link HwQp#attr()}).
     * {@code ibv_create_qp} reports {@code requested} all the same ({@link HwQp#cap()}), as a driver that sizes its
     * rings apart from {@code attrs->cap} leaves it as it was. The default makes the queues as asked. siw rounds the
     * depths up to powers of two ({@code siw_create_qp}) and carries up to {@code SIW_MAX_INLINE} inline bytes
     * whatever was asked ({@code siw_copy_inline_sgl}). Called before the QP exists; throwing an
     * {@link dev.dmaplane.errno.ErrnoException} refuses the create (nothing made).
     */
    default QpCap qpQueueCap(QpType type, QpCap requested) {
        return requested;
    }

    default void createQp(HwQp qp) {
    }

    /**
     * Whether the device follows an SQD's drain: a modify from RTS to SQD with {@code IB_QP_EN_SQD_ASYNC_NOTIFY} set
     * raises SQ_DRAINED once no started send is outstanding, and a query in SQD reports {@code sq_draining} while one
     * is; true by default, as rxe keeps {@code en_sqd_async_notify} and {@code sq_draining}. siw does neither
     * ({@code siw_verbs_modify_qp} reads only the state and the access flags, {@code siw_query_qp} sets no
     * {@code sq_draining}). Read at every modify and query.
     */
    default boolean tracksSqDrain() {
        return true;
    }

    /**
     * Whether a work request the provider completes with an error status (not {@code WR_FLUSH_ERR}) moves its QP on,
     * as rxe's completer and responder do ({@code rxe_comp.c}, {@code rxe_resp.c}): a failed send puts an RC QP in
     * ERR and a UC or UD QP in SQE, a failed receive puts the QP in ERR, flushing what is outstanding. True by default.
     * A provider that answers false gets the completion alone and moves the QP itself where its transport says
     * ({@link HwQp#enterError}): siw's {@code siw_sqe_complete} and {@code siw_rqe_complete} write the CQE and nothing
     * else, its QP going to ERR when the connection is released ({@code siw_qp_llp_close}) or staying in RTS after a
     * local transmit error ({@code siw_qp_sq_process}). Asked at each such completion, under the QP's lock: it must
     * not block or call back into the core.
     *
     * @param send whether {@code status} ends a send work request (else a receive)
     */
    default boolean completionErrorMovesQp(HwQp qp, boolean send, WcStatus status) {
        return true;
    }

    /**
     * {@code modify_qp}: called with attributes that passed {@code ib_modify_qp_is_ok} and rxe's value checks (or,
     * for a provider with its own {@link #qpStateMachine()}, which chose {@code to}, only the checks
     * {@code uverbs_cmd.c} and {@code _ib_modify_qp} make for every device), before the QP takes them, inside
     * {@link #quiesce}.
     */
    default void modifyQp(HwQp qp, QpAttr attr, QpState from, QpState to) {
    }

    /**
     * Runs {@code change} with the provider's work on {@code qp} held off and returns its result: the core's half of
     * a {@code modify_qp} ({@link #modifyQp}, then the QP's new state and attributes with the flush or discard of
     * its queues), so that the HCA never works on the QP between the two, as rxe stops a QP's tasks around a reset
     * ({@code rxe_disable_task}) and changes {@code qp_state} under the lock its tasks read it under. The default
     * runs it as it is, for a provider that does no work on threads of its own.
     */
    default <T> T quiesce(HwQp qp, Supplier<T> change) {
        return change.get();
    }

    default void destroyQp(HwQp qp) {
    }

    /**
     * {@code query_qp}: what {@code ibv_query_qp} reports of {@code qp}, given {@code held}, what the core holds (the
     * state, the capabilities and every attribute the modifies gave, with their mask bits). The default reports
     * {@code held}, as rxe's {@code rxe_query_qp} copies the attributes it stored; a driver that answers otherwise
     * ({@code siw_query_qp}: fixed access flags, the connection's read queue depths, nothing of a path) builds its
     * answer from it. Only what the user sees: {@link HwQp#attr()} stays what the modifies gave.
     */
    default QpAttr queryQp(HwQp qp, QpAttr held) {
        return held;
    }

    default void createSrq(HwSrq srq) {
    }

    default void modifySrq(HwSrq srq, SrqAttr attr, int mask) {
    }

    default void destroySrq(HwSrq srq) {
    }

    /** {@code reg_user_mr}: the region is pinned and mapped (or set up on demand) and has its keys. */
    default void regMr(HwMr mr) {
    }

    /**
     * Whether the device has {@code reg_user_mr_dmabuf} in its ops: the default, for an HCA that reaches dma-buf
     * memory through the core's {@code ib_umem_dmabuf}. A device without it (siw, whose {@code siw_device_ops} has
     * none) refuses every {@code ibv_reg_dmabuf_mr} with {@code EOPNOTSUPP} before any other check, as
     * {@code UVERBS_METHOD_REG_DMABUF_MR} does ({@code uverbs_std_types_mr.c}): nothing is attached or referenced.
     * Read at every registration.
     */
    default boolean hasRegUserMrDmabuf() {
        return true;
    }

    /**
     * Whether a LOCAL_INV or a SEND_WITH_INV may invalidate a memory region's key, not only a window's. False by
     * default, as rxe: {@code rxe_invalidate_mr} invalidates only fast-registration regions
     * ({@code IB_MR_TYPE_MEM_REG}), which user space cannot make, so the key of a user region is refused
     * ({@link MemoryAccess#executeLocal} answers {@code LOC_QP_OP_ERR}, {@link MemoryAccess#invalidateRemote} false)
     * and the region stays usable. siw answers true: {@code siw_invalidate_stag} invalidates any STag of the QP's PD
     * (lkey and rkey are one STag), found by its index alone (the 8-bit key is not compared) and already invalid or
     * not, and refuses a region of another PD; from then on every access through the key fails as
     * {@code siw_check_mem} fails an invalid STag ({@link AccessFault}, {@link HwMr#isStagValid()} false) until the
     * region is deregistered, as nothing makes a user region's STag valid again ({@code siw_fastreg_mr} does that
     * for fast-registration regions only). Leases handed out before stay usable until closed. Asked at every
     * invalidation of a region's key.
     */
    default boolean invalidatesRegions() {
        return false;
    }

    /** {@code rereg_user_mr}: the region has its new translation, PD, access and keys. */
    default void reregMr(HwMr mr) {
    }

    default void deregMr(HwMr mr) {
    }

    /**
     * An on-demand region's pages in {@code [iova, iova+length)} are about to be unmapped (the interval notifier
     * fired): forget any translation cached for them. Runs while no lease on the region is open, in the
     * invalidating thread with the address space's locks held: it must not call into the address space.
     */
    default void invalidateRange(HwMr mr, long iova, long length) {
    }

    default void allocMw(HwMw mw) {
    }

    default void deallocMw(HwMw mw) {
    }

    default void createAh(HwAh ah) {
    }

    default void destroyAh(HwAh ah) {
    }

    /**
     * The provider's own checks of a send work request at post time, after the core's ({@code validate_send_wr}),
     * before it is queued: what a driver's {@code post_send} refuses although the verbs allow it (siw's opcodes,
     * for one). Throwing an {@link dev.dmaplane.errno.ErrnoException} refuses the request, which then becomes
     * {@code PostException.badWr()}. Runs with the QP's lock held: it must only look at {@code wr} and {@code qp}'s
     * attributes, never call the core.
     */
    default void checkSend(HwQp qp, SendWr wr) {
    }

    /**
     * The errno of a receive work request posted to {@code qp} when its receive queue has no room: ENOMEM by default,
     * as rxe's {@code post_one_recv} answers a full queue. siw answers EINVAL for a QP made without a receive queue
     * ({@code siw_post_receive}: {@code rq_size} 0). Asked only then, with the QP's lock held: it must only look at
     * {@code qp}'s attributes, never call the core.
     */
    default Errno recvQueueFullErrno(HwQp qp) {
        return Errno.ENOMEM;
    }

    /** Doorbell: send work requests were queued on {@code qp} (or it re-entered RTS with some waiting). */
    void postSend(HwQp qp);

    /** Doorbell: receive work requests were queued on {@code qp}. */
    default void postRecv(HwQp qp) {
    }

    /** Doorbell: receive work requests were queued on {@code srq}. */
    default void postSrqRecv(HwSrq srq) {
    }

    /** The consumer polls {@code cq}: do pending work now if the provider progresses lazily. */
    default void pollCq(HwCq cq) {
    }

    /**
     * Whether {@link #pollCq} does work (lazy progress): the core then calls it on every poll. Otherwise (the
     * default) a poll only reads CQ memory, as {@code ibv_poll_cq} does: never a call into the provider, and no
     * lock at all when the CQ is empty.
     */
    default boolean progressesOnPoll() {
        return false;
    }

    /**
     * {@code get_hw_stats}: the port's hardware counters by name, in the order the driver lists them (what
     * {@code rdma statistic show link DEV/PORT} prints); none by default.
     */
    default SequencedMap<String, Long> hwCounters(int port) {
        return new LinkedHashMap<>();
    }

    /**
     * Sends a MAD from the port's GSI (QP1), as a UD send of the special QP the core owns ({@code ib_post_send} on
     * the GSI QP of {@code mad.c}): to {@code d.destQpn()} at {@code d.dgid()} with the Q_Key and P_Key the core put
     * in. It may return before the datagram left; a datagram the port cannot send is dropped, as a lost one is. The
     * default has no GSI.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EOPNOTSUPP} when the device has no GSI
     */
    default void sendMad(MadDatagram d) {
        throw new ErrnoException(Errno.EOPNOTSUPP, driverName() + " has no GSI (QP1): no MAD can be sent");
    }

    /** {@code cq} was armed. */
    default void reqNotifyCq(HwCq cq, boolean solicitedOnly) {
    }
}
