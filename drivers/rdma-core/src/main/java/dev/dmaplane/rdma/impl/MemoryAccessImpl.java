package dev.dmaplane.rdma.impl;

import dev.dmaplane.dma.DmaFaultException;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.HwPd;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.spi.SendWqe;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.Sge;
import dev.dmaplane.rdma.verbs.WcStatus;

import java.lang.foreign.MemorySegment;
import java.util.List;

/** Key lookups and DMA for providers, after rdma_rxe's {@code rxe_mr.c}, {@code rxe_mw.c} and {@code copy_data}. */
final class MemoryAccessImpl implements MemoryAccess {
    private final DeviceImpl dev;

    MemoryAccessImpl(DeviceImpl dev) {
        this.dev = dev;
    }

    private static PdImpl pd(HwPd pd) {
        if (!(pd instanceof PdImpl p)) {
            throw new ErrnoException(Errno.EINVAL, "not a PD of this core: " + pd);
        }
        return p;
    }

    private static QpImpl qp(HwQp qp) {
        if (!(qp instanceof QpImpl q)) {
            throw new ErrnoException(Errno.EINVAL, "not a QP of this core: " + qp);
        }
        return q;
    }

    @Override
    public DmaLease local(HwPd hwPd, int lkey, long addr, long length, int access) {
        PdImpl pd = pd(hwPd);
        if ((access & ~Access.LOCAL_WRITE) != 0) {
            throw new ErrnoException(Errno.EINVAL, "local access is LOCAL_WRITE or 0, not " + Access.toString(access));
        }
        if (length < 0) {
            throw new ErrnoException(Errno.EINVAL, "negative length " + length);
        }
        if (length == 0) {
            return LeaseImpl.empty();
        }
        MrImpl mr = KeyTable.isMwKey(lkey) ? null : dev.keys.mr(lkey);
        if (mr == null) {
            throw new AccessFault(WcStatus.LOC_PROT_ERR, Errno.EINVAL, "lkey 0x" + Integer.toHexString(lkey) + " names no memory region");
        }
        return mr.lease(lkey, pd, addr, length, access, WcStatus.LOC_PROT_ERR);
    }

    @Override
    public DmaLease remote(HwQp hwQp, int rkey, long addr, long length, int access) {
        QpImpl qp = qp(hwQp);
        if (access != Access.REMOTE_READ && access != Access.REMOTE_WRITE && access != Access.REMOTE_ATOMIC) {
            throw new ErrnoException(Errno.EINVAL, "remote access is one of REMOTE_READ, REMOTE_WRITE, REMOTE_ATOMIC, not "
                    + Access.toString(access));
        }
        if ((qp.attr().qpAccessFlags() & access) != access) {
            // rxe check_op_valid: the responder QP does not accept the operation
            throw new AccessFault(WcStatus.REM_INV_REQ_ERR, Errno.EACCES, "qp " + qp.qpNum() + " does not allow "
                    + Access.toString(access));
        }
        if (length < 0) {
            throw new ErrnoException(Errno.EINVAL, "negative length " + length);
        }
        if (length == 0) {
            return LeaseImpl.empty();
        }
        if (KeyTable.isMwKey(rkey)) {
            MwImpl mw = dev.keys.mw(rkey);
            if (mw == null) {
                throw new AccessFault(WcStatus.REM_ACCESS_ERR, Errno.EINVAL, "rkey 0x" + Integer.toHexString(rkey) + " names no window");
            }
            return mw.lease(qp, rkey, addr, length, access);
        }
        MrImpl mr = dev.keys.mr(rkey);
        if (mr == null) {
            throw new AccessFault(WcStatus.REM_ACCESS_ERR, Errno.EINVAL, "rkey 0x" + Integer.toHexString(rkey) + " names no region");
        }
        return mr.lease(rkey, qp.pd(), addr, length, access, WcStatus.REM_ACCESS_ERR);
    }

    @Override
    public long gather(HwQp hwQp, List<Sge> sges, MemorySegment dst) {
        QpImpl qp = qp(hwQp);
        long total = 0;
        for (Sge s : sges) {
            total += s.length();
        }
        if (total > dst.byteSize()) {
            throw new AccessFault(WcStatus.LOC_LEN_ERR, Errno.EINVAL, total + " bytes do not fit " + dst.byteSize());
        }
        long pos = 0;
        for (Sge s : sges) {
            if (s.length() == 0) {
                continue;
            }
            try (DmaLease l = local(qp.pd(), s.lkey(), s.addr(), s.length(), 0)) {
                l.read(0, dst.asSlice(pos, s.length()));
            } catch (DmaFaultException e) {
                throw new AccessFault(WcStatus.LOC_PROT_ERR, Errno.EFAULT, "IOMMU refused the read of " + s, e);
            }
            pos += s.length();
        }
        return total;
    }

    @Override
    public long scatter(HwQp hwQp, List<Sge> sges, MemorySegment src) {
        QpImpl qp = qp(hwQp);
        long room = 0;
        for (Sge s : sges) {
            room += s.length();
        }
        if (src.byteSize() > room) {
            throw new AccessFault(WcStatus.LOC_LEN_ERR, Errno.ENOSPC, src.byteSize() + " bytes exceed the " + room
                    + " bytes of the scatter list");
        }
        long pos = 0;
        for (Sge s : sges) {
            long n = Math.min(s.length(), src.byteSize() - pos);
            if (n == 0) {
                continue;
            }
            try (DmaLease l = local(qp.pd(), s.lkey(), s.addr(), n, Access.LOCAL_WRITE)) {
                l.write(0, src.asSlice(pos, n));
            } catch (DmaFaultException e) {
                throw new AccessFault(WcStatus.LOC_PROT_ERR, Errno.EFAULT, "IOMMU refused the write of " + s, e);
            }
            pos += n;
        }
        return pos;
    }

    @Override
    public WcStatus executeLocal(HwQp hwQp, SendWqe wqe) {
        QpImpl qp = qp(hwQp);
        return switch (wqe.wr()) {
            case SendWr.LocalInv inv -> invalidate(qp, inv.invalidateRkey(), false) ? WcStatus.SUCCESS : WcStatus.LOC_QP_OP_ERR;
            case SendWr.BindMw b -> ((MwImpl) b.mw()).doBind(qp, (SendWqeImpl) wqe);
            default -> throw new ErrnoException(Errno.EINVAL, wqe.opcode() + " is not a local operation");
        };
    }

    @Override
    public boolean invalidateRemote(HwQp hwQp, int rkey) {
        return invalidate(qp(hwQp), rkey, true);
    }

    /**
     * {@code rxe_invalidate_rkey}: a window by {@code rxe_invalidate_mw}; a region only on a provider that lets
     * invalidations reach regions ({@code siw_invalidate_stag}: found by the key's index alone, then the PD), as
     * rxe's {@code rxe_invalidate_mr} refuses every region that is not a fast-registration one, which user regions
     * never are.
     */
    private boolean invalidate(QpImpl qp, int rkey, boolean remote) {
        if (!KeyTable.isMwKey(rkey)) {
            MrImpl mr = dev.provider.invalidatesRegions() ? dev.keys.mr(rkey) : null;
            return mr != null && mr.invalidateStag(qp.pd());
        }
        MwImpl mw = dev.keys.mw(rkey);
        return mw != null && mw.invalidate(qp, rkey, remote);
    }
}
