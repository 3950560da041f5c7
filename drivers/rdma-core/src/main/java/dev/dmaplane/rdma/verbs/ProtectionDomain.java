package dev.dmaplane.rdma.verbs;

/** A protection domain ({@code ibv_alloc_pd}): MRs, MWs, QPs, SRQs and AHs belong to one. */
public interface ProtectionDomain extends VerbsObject {
    /** The device-wide PD number ({@code pdn} in {@code rdma res}). */
    int pdn();

    /** {@code ibv_reg_mr}: registers {@code [addr, addr+length)} with IOVA {@code addr}. */
    default MemoryRegion regMr(long addr, long length, int access) {
        return regMr(addr, length, addr, access);
    }

    /**
     * {@code ibv_reg_mr_iova}: registers {@code [addr, addr+length)} of the context's address space, addressed as
     * {@code [iova, iova+length)} by work requests. Without {@link Access#ON_DEMAND} the pages are pinned
     * long-term ({@code FOLL_WRITE} too when the access is writable) and mapped through the HCA's DMA API; with it
     * nothing is pinned and pages are faulted in when the HCA touches them.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for unknown access bits, remote write or atomic
     *                                           without local write, a zero or overflowing length, a length above
     *                                           max_mr_size, an IOVA whose page offset differs from the address's;
     *                                           {@code EOPNOTSUPP} for on-demand paging on a device without it;
     *                                           {@code EFAULT} from pinning; {@code ENOMEM} beyond max_mr;
     *                                           {@code EAGAIN} beyond the cgroup's hca_object
     */
    MemoryRegion regMr(long addr, long length, long iova, int access);

    /**
     * {@code ibv_alloc_mw}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EOPNOTSUPP} when the device lacks the window type
     */
    MemoryWindow allocMw(MwType type);

    /** {@code ibv_create_qp}. */
    QueuePair createQp(QpInitAttr attr);

    /** {@code ibv_create_srq}; {@code srqLimit} is ignored. */
    SharedReceiveQueue createSrq(SrqAttr attr);

    /** {@code ibv_create_ah}. */
    AddressHandle createAh(AhAttr attr);
}
