package dev.dmaplane.rdma.impl;

import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.HwMr;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.DeviceCap;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.ReregFlags;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UContext;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A memory region ({@code ib_uverbs_reg_mr} with rxe's {@code rxe_mr.c}): access checked as
 * {@code ib_check_mr_access}, range as {@code ib_umem_get}, memory from {@link PinnedUserMemory} or
 * {@link OdpUserMemory}, keys {@code index << 8 | key} from the device's {@link KeyTable} (lkey and rkey equal, as
 * rxe makes them). Accesses of the data path hold the read lock of {@link #rw}; deregistration, re-registration
 * and ODP invalidation take the write lock, so they wait for accesses in progress.
 */
final class MrImpl extends ObjectImpl implements MemoryRegion, HwMr {
    final ReentrantReadWriteLock rw = new ReentrantReadWriteLock();
    /** What closing a lease does: the read lock it held. */
    private final Runnable unlockRead = () -> rw.readLock().unlock();
    final AtomicInteger boundWindows = new AtomicInteger();
    private final int index;
    private volatile PdImpl pd;
    private volatile int key;
    private volatile int access;
    private volatile UserMemory umem;
    private volatile boolean valid = true;

    private MrImpl(ContextImpl ctx, PdImpl pd, int index, int access) {
        super(ctx, "mr");
        this.pd = pd;
        this.index = index;
        this.access = access;
        this.key = ctx.dev.keys.nextKey(index);
    }

    /** {@code ib_check_mr_access}. */
    static void checkAccess(DeviceImpl dev, int access) {
        if ((access & (Access.REMOTE_ATOMIC | Access.REMOTE_WRITE)) != 0 && (access & Access.LOCAL_WRITE) == 0) {
            throw new ErrnoException(Errno.EINVAL, "access " + Access.toString(access)
                    + ": remote write or atomic access needs local write");
        }
        if ((access & ~Access.SUPPORTED) != 0) {
            throw new ErrnoException(Errno.EINVAL, "access " + Access.toString(access) + " has unknown bits");
        }
        if ((access & Access.ON_DEMAND) != 0 && !dev.attr.has(DeviceCap.ON_DEMAND_PAGING)) {
            throw new ErrnoException(Errno.EOPNOTSUPP, dev.name() + " has no on-demand paging");
        }
        if ((access & (Access.FLUSH_GLOBAL | Access.FLUSH_PERSISTENT)) != 0) {
            throw new ErrnoException(Errno.EOPNOTSUPP, dev.name() + " has no flush placement types");
        }
    }

    /** The range checks of {@code ib_uverbs_reg_mr} and {@code ib_umem_get}. */
    static void checkRange(DeviceImpl dev, long addr, long length, long iova) {
        if (length <= 0) {
            throw new ErrnoException(Errno.EINVAL, "memory region length " + length + " must be > 0");
        }
        long end = addr + length;
        if (Long.compareUnsigned(end, addr) < 0 || Long.compareUnsigned(end + 4095 & -4096L, end) < 0
                || Long.compareUnsigned(iova + length, iova) < 0) {
            throw new ErrnoException(Errno.EINVAL, "memory region 0x" + Long.toHexString(addr) + "+" + length
                    + " (iova 0x" + Long.toHexString(iova) + ") overflows");
        }
        if (Long.compareUnsigned(length, dev.attr.maxMrSize()) > 0) {
            throw new ErrnoException(Errno.EINVAL, "memory region length " + length + " exceeds max_mr_size "
                    + dev.attr.maxMrSize());
        }
        if ((addr & 4095) != (iova & 4095)) {
            throw new ErrnoException(Errno.EINVAL, "address 0x" + Long.toHexString(addr) + " and IOVA 0x"
                    + Long.toHexString(iova) + " differ in their page offset");
        }
    }

    private static UserMemory memory(ContextImpl ctx, MrImpl mr, long addr, long length, long iova, int access) {
        DeviceImpl dev = ctx.dev;
        return (access & Access.ON_DEMAND) != 0 ? OdpUserMemory.get(ctx.mm, dev.dma, addr, length, iova, mr)
                : PinnedUserMemory.get(ctx.mm, dev.dma, addr, length, iova, access, dev.attr.pageSizeCap());
    }

    static MrImpl register(ContextImpl ctx, PdImpl pd, long addr, long length, long iova, int access) {
        DeviceImpl dev = ctx.dev;
        try (UContext.Call c = ctx.enter()) {
            pd.checkUsable(ctx, "pd");
            checkAccess(dev, access);
            checkRange(dev, addr, length, iova);
            dev.mrs.acquire();
            int index = dev.keys.allocMrIndex();
            if (index < 0) {
                dev.mrs.release();
                throw new ErrnoException(Errno.ENOMEM, dev.name() + ": no memory key index left");
            }
            MrImpl mr;
            try {
                mr = new MrImpl(ctx, pd, index, access);
                mr.umem = memory(ctx, mr, addr, length, iova, access);
            } catch (RuntimeException e) {
                dev.keys.free(index);
                dev.mrs.release();
                throw e;
            }
            pd.regions.incrementAndGet();
            try {
                dev.provider.regMr(mr);
            } catch (RuntimeException e) {
                mr.teardown();
                throw e;
            }
            ctx.register(mr);
            dev.keys.publish(index, mr);
            return mr;
        }
    }

    /** Everything registration took, given back. */
    private void teardown() {
        valid = false;
        dev.keys.unpublish(index);
        UserMemory u = umem;
        u.detach();
        rw.writeLock().lock();
        try {
            u.release();
        } finally {
            rw.writeLock().unlock();
        }
        dev.keys.free(index);
        dev.mrs.release();
        pd.regions.decrementAndGet();
    }

    @Override
    void release(RemoveReason reason) {
        if (reason == RemoveReason.DESTROY && boundWindows.get() > 0) {
            // IBA 10.6.7.2.6 (rxe_dereg_mr): a region with bound windows cannot be deregistered
            throw new ErrnoException(Errno.EINVAL, "mr " + handle() + " has " + boundWindows.get() + " memory window(s) bound");
        }
        for (MwImpl w : dev.keys.windows()) {
            w.unbindFrom(this);
        }
        dev.provider.deregMr(this);
        teardown();
    }

    @Override
    public void rereg(int flags, ProtectionDomain newPd, long newAddr, long newLength, int newAccess) {
        try (UContext.Call c = ctx.enter()) {
            if (isDestroyed()) {
                throw new ErrnoException(Errno.EINVAL, "mr " + handle() + " was deregistered");
            }
            if (flags == 0 || (flags & ~ReregFlags.ALL) != 0) {
                throw new ErrnoException(Errno.EINVAL, "rereg flags 0x" + Integer.toHexString(flags));
            }
            if (boundWindows.get() > 0) {
                throw new ErrnoException(Errno.EBUSY, "mr " + handle() + " has memory windows bound");
            }
            PdImpl targetPd = pd;
            if ((flags & ReregFlags.CHANGE_PD) != 0) {
                if (!(newPd instanceof PdImpl p)) {
                    throw new ErrnoException(Errno.EINVAL, "rereg to a PD not of this core: " + newPd);
                }
                p.checkUsable(ctx, "pd");
                targetPd = p;
            }
            int targetAccess = access;
            if ((flags & ReregFlags.CHANGE_ACCESS) != 0) {
                checkAccess(dev, newAccess);
                if (((newAccess ^ access) & Access.ON_DEMAND) != 0) {
                    throw new ErrnoException(Errno.EINVAL, "rereg cannot turn on-demand paging on or off");
                }
                targetAccess = newAccess;
            }
            UserMemory old = umem;
            UserMemory fresh = null;
            if ((flags & ReregFlags.CHANGE_TRANSLATION) != 0) {
                if (newAddr == 0) {
                    throw new ErrnoException(Errno.EINVAL, "rereg to address 0");
                }
                checkRange(dev, newAddr, newLength, newAddr);
                fresh = memory(ctx, this, newAddr, newLength, newAddr, targetAccess);
            } else if (!old.onDemand() && Access.writable(targetAccess) != Access.writable(access)) {
                // the pin must change between FOLL_WRITE and read-only
                fresh = memory(ctx, this, old.addr, old.length, old.iova, targetAccess);
            }
            if (fresh != null) {
                old.detach();
            }
            rw.writeLock().lock();
            try {
                if (fresh != null) {
                    umem = fresh;
                    old.release();
                }
                if (targetPd != pd) {
                    pd.regions.decrementAndGet();
                    targetPd.regions.incrementAndGet();
                    pd = targetPd;
                }
                access = targetAccess;
                key = dev.keys.nextKey(index);
            } finally {
                rw.writeLock().unlock();
            }
            dev.provider.reregMr(this);
        }
    }

    // ---- data path ----

    /** Check of a keyed access, run before faulting and again under the lock. */
    private void checkKeyed(int k, PdImpl qpPd, long a, long len, int acc, WcStatus fail) {
        if (!valid) {
            throw new AccessFault(fail, Errno.EINVAL, "key 0x" + Integer.toHexString(k) + " names a deregistered region");
        }
        if (k != key) {
            throw new AccessFault(fail, Errno.EINVAL, "key 0x" + Integer.toHexString(k) + " is stale: mr "
                    + handle() + " has key 0x" + Integer.toHexString(key));
        }
        if (qpPd != pd) {
            throw new AccessFault(fail, Errno.EACCES, "mr with key 0x" + Integer.toHexString(k) + " is in pd "
                    + pd.pdn() + ", the access comes from pd " + qpPd.pdn());
        }
        if ((acc & access) != acc) {
            throw new AccessFault(fail, Errno.EACCES, "mr with key 0x" + Integer.toHexString(k) + " has access "
                    + Access.toString(access) + ", the operation needs " + Access.toString(acc));
        }
        checkRange(a, len, fail);
    }

    private void checkRange(long a, long len, WcStatus fail) {
        UserMemory u = umem;
        if (Long.compareUnsigned(a, u.iova) < 0 || len > u.length || a - u.iova > u.length - len) {
            throw new AccessFault(fail, Errno.EFAULT, "range 0x" + Long.toHexString(a) + "+" + len
                    + " is outside mr [0x" + Long.toHexString(u.iova) + ", +" + u.length + ")");
        }
    }

    /** A keyed access (lkey or rkey): every check of {@code lookup_mr} and {@code mr_check_range}. */
    DmaLease lease(int k, PdImpl qpPd, long a, long len, int acc, WcStatus fail) {
        boolean write = (acc & (Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_ATOMIC)) != 0;
        return lease(a, len, write, fail, () -> checkKeyed(k, qpPd, a, len, acc, fail));
    }

    /** An access through a bound window: the window checked everything but the region's range and validity. */
    DmaLease leaseForWindow(long a, long len, boolean write, WcStatus fail) {
        return lease(a, len, write, fail, () -> {
            if (!valid) {
                throw new AccessFault(fail, Errno.EINVAL, "the window's region was deregistered");
            }
            checkRange(a, len, fail);
        });
    }

    private DmaLease lease(long a, long len, boolean write, WcStatus fail, Runnable check) {
        check.run();
        UserMemory u = umem;
        if (u instanceof OdpUserMemory odp) {
            try {
                odp.makePresent(a - u.iova, len, write, rw, check);
            } catch (AccessFault f) {
                throw f;
            } catch (ErrnoException e) {
                throw new AccessFault(fail, e.errno(), "on-demand page fault at 0x" + Long.toHexString(a) + "+" + len
                        + " failed: " + e.getMessage(), e);
            }
            return newLease(umem, a, len);
        }
        rw.readLock().lock();
        try {
            check.run();
            return newLease(umem, a, len);
        } catch (RuntimeException e) {
            rw.readLock().unlock();
            throw e;
        }
    }

    /** Called with the read lock held; the lease releases it. */
    private DmaLease newLease(UserMemory u, long a, long len) {
        List<DmaSegment> segs = u.translate(a - u.iova, len);
        return new LeaseImpl(segs, dev.bus, unlockRead);
    }

    // ---- views ----

    int index() {
        return index;
    }

    boolean isValid() {
        return valid;
    }

    PdImpl pdImpl() {
        return pd;
    }

    @Override
    public PdImpl pd() {
        return pd;
    }

    @Override
    public long addr() {
        return umem.addr;
    }

    @Override
    public long length() {
        return umem.length;
    }

    @Override
    public long iova() {
        return umem.iova;
    }

    @Override
    public int lkey() {
        return key;
    }

    @Override
    public int rkey() {
        return key;
    }

    @Override
    public int access() {
        return access;
    }

    @Override
    public long pageSize() {
        return umem.pageSize();
    }

    @Override
    public boolean isOnDemand() {
        return umem.onDemand();
    }

    @Override
    public long[] dmaBlocks() {
        return umem.dmaBlocks();
    }

    /** DMA mappings this region holds now (1 for a pinned region, one per present page on demand). */
    int dmaMappings() {
        return umem.dmaMappings();
    }

    @Override
    Map<String, String> resAttrs() {
        UserMemory u = umem;
        Map<String, String> m = new LinkedHashMap<>();
        m.put("mrn", Integer.toString(index));
        m.put("lkey", "0x" + Integer.toHexString(key));
        m.put("rkey", "0x" + Integer.toHexString(key));
        m.put("mrlen", Long.toString(u.length));
        m.put("iova", "0x" + Long.toHexString(u.iova));
        m.put("pdn", Integer.toString(pd.pdn()));
        m.put("access", Access.toString(access));
        m.put("pgsz", Long.toString(u.pageSize()));
        m.put(u.onDemand() ? "odp-mapped" : "pinned", Long.toString(u.onDemand() ? u.dmaMappings() : u.pinnedPages()));
        return m;
    }
}
