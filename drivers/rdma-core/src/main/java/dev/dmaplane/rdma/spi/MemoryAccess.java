package dev.dmaplane.rdma.spi;

import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcStatus;
import org.osgi.annotation.versioning.ProviderType;

import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * The memory checks and translations of the data path, done by the core for every provider as rdma_rxe's
 * {@code rxe_mr.c} and {@code rxe_mw.c} do them: key lookup (index and 8-bit key), PD and access checks, range
 * checks, window binding, window and (where the provider allows it) region invalidation, on-demand faulting. Every
 * refusal is an {@link AccessFault} carrying the completion status.
 */
@ProviderType
public interface MemoryAccess {
    /**
     * A local access through an lkey ({@code lookup_mr(pd, access, lkey, RXE_LOOKUP_LOCAL)} and
     * {@code mr_check_range}). A zero length needs no key.
     *
     * @param access {@link dev.dmaplane.rdma.verbs.Access#LOCAL_WRITE} for writes, 0 for reads
     * @throws AccessFault {@code LOC_PROT_ERR}
     */
    DmaLease local(HwPd pd, int lkey, long addr, long length, int access);

    /**
     * A remote access through an rkey of a region or a window, as the responder checks it: the QP must allow the
     * operation ({@code qp_access_flags}, else {@code REM_INV_REQ_ERR}), the key must name a valid region or
     * window of the QP's PD granting {@code access} over the range (else {@code REM_ACCESS_ERR}); a type 2 window
     * must be bound to this QP. A zero length needs no key.
     *
     * @param access one of {@code REMOTE_READ}, {@code REMOTE_WRITE}, {@code REMOTE_ATOMIC}
     */
    DmaLease remote(HwQp qp, int rkey, long addr, long length, int access);

    /**
     * Reads the bytes of a scatter/gather list into {@code dst} (the send side of SEND, RDMA WRITE).
     *
     * @return bytes read
     * @throws AccessFault {@code LOC_PROT_ERR}, or {@code LOC_LEN_ERR} when {@code dst} is smaller
     */
    long gather(HwQp qp, List<Sge> sges, MemorySegment dst);

    /**
     * Writes {@code src} into a scatter/gather list (the receive side, RDMA READ responses, atomic results).
     *
     * @return bytes written
     * @throws AccessFault {@code LOC_PROT_ERR}, or {@code LOC_LEN_ERR} when the list is too short
     */
    long scatter(HwQp qp, List<Sge> sges, MemorySegment src);

    /**
     * Executes a local send work request, BIND_MW or LOCAL_INV, in queue order ({@code rxe_do_local_ops}). A
     * LOCAL_INV invalidates a bound type 2 window of the QP's PD, or, on a provider that
     * {@link RdmaProvider#invalidatesRegions() invalidates regions}, a region of the QP's PD
     * ({@code siw_invalidate_stag}).
     *
     * @return SUCCESS, {@code MW_BIND_ERR} for a refused bind, {@code LOC_QP_OP_ERR} for a refused invalidation
     */
    WcStatus executeLocal(HwQp qp, SendWqe wqe);

    /**
     * The invalidation a SEND_WITH_INV asks of the responder ({@code rxe_invalidate_rkey}): a bound type 2 window of
     * the QP's PD bound through this QP, or, on a provider that {@link RdmaProvider#invalidatesRegions() invalidates
     * regions}, a region of the QP's PD ({@code siw_invalidate_stag}: found by the key's index alone).
     *
     * @return whether it was invalidated
     */
    boolean invalidateRemote(HwQp qp, int rkey);
}
