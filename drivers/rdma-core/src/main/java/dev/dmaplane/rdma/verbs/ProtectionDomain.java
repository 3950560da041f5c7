package dev.dmaplane.rdma.verbs;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufHandle;
import org.osgi.annotation.versioning.ProviderType;

/** A protection domain ({@code ibv_alloc_pd}): MRs, MWs, QPs, SRQs and AHs belong to one. */
@ProviderType
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
     * {@code ibv_reg_dmabuf_mr(pd, offset, length, iova, fd, access)} ({@code ibv_reg_mr(3)}; the kernel's
     * {@code UVERBS_METHOD_REG_DMABUF_MR} and {@code drivers/infiniband/core/umem_dmabuf.c}): registers bytes
     * {@code [offset, offset+length)} of the dma-buf behind {@code fd}, addressed as {@code [iova, iova+length)} by
     * work requests. The region holds its own reference to the buffer, so closing {@code fd} afterwards changes
     * nothing. {@link MemoryRegion#addr()} is {@code offset}, as libibverbs sets {@code ibv_mr.addr}.
     * <p>
     * A device that can invalidate translations ({@link DeviceCap#ON_DEMAND_PAGING}) attaches as a dynamic
     * importer ({@code ib_umem_dmabuf_get}): the buffer may move, {@code move_notify} drops the mapping and the
     * next access maps it again under the reservation lock, after the exporter's {@code KERNEL} fences. Other
     * devices pin the buffer where it is ({@code ib_umem_dmabuf_get_pinned}).
     *
     * @param fd an open dma-buf handle ({@code dma_buf_get(fd)})
     * @throws dev.dmaplane.errno.ErrnoException {@code EOPNOTSUPP} first, on a device without
     *                                           {@code reg_user_mr_dmabuf} (siw); {@code EINVAL} when {@code offset} and {@code iova} differ in
     *                                           their page offset, for access bits other than LOCAL_WRITE,
     *                                           REMOTE_READ, REMOTE_WRITE, REMOTE_ATOMIC, RELAXED_ORDERING (so
     *                                           ON_DEMAND and MW_BIND too), remote write or atomic without local
     *                                           write, a zero length, a length above max_mr_size, or
     *                                           {@code offset+length} overflowing or beyond the buffer's size;
     *                                           {@code EBADF} for a closed handle or a released buffer; the
     *                                           exporter's errno when it refuses the attach, pin or map
     *                                           ({@code EOPNOTSUPP}, {@code EBUSY}, {@code ENODEV} after revoke);
     *                                           {@code ETIMEDOUT} when its KERNEL fences do not signal;
     *                                           {@code ENOMEM} beyond max_mr; {@code EAGAIN} beyond the cgroup's
     *                                           hca_object. A refused registration leaves nothing attached,
     *                                           mapped or pinned.
     */
    MemoryRegion regDmabufMr(long offset, long length, long iova, DmaBufHandle fd, int access);

    /**
     * {@code ibv_reg_dmabuf_mr(pd, offset, length, iova, fd, access)} as a process calls it: {@code fd} is a number
     * in the open files of the process that opened this device ({@code AddressSpace.files()}), resolved as
     * {@code dma_buf_get(fd)} does; then as {@link #regDmabufMr(long, long, long, DmaBufHandle, int)}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EOPNOTSUPP} on a device without {@code reg_user_mr_dmabuf},
     *                                           whatever {@code fd} is; {@code EBADF} for a number that is not open,
     *                                           {@code EINVAL} for an open file that is not a dma-buf; the errors of
     *                                           the handle form
     */
    MemoryRegion regDmabufMr(long offset, long length, long iova, int fd, int access);

    /**
     * {@link #regDmabufMr(long, long, long, DmaBufHandle, int)} with the buffer itself instead of a handle (what
     * an in-kernel user holding a {@code struct dma_buf} passes); {@code EBADF} when it was released.
     */
    MemoryRegion regDmabufMr(long offset, long length, long iova, DmaBuf dmabuf, int access);

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
