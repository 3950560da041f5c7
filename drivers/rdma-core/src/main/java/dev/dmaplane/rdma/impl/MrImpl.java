package dev.dmaplane.rdma.impl;

import dev.dmaplane.dma.DmaSegment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufHandle;
import dev.dmaplane.mem.HostMemory;
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
import java.util.Optional;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.ReentrantLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.Function;

/**
 * A memory region ({@code ib_uverbs_reg_mr} with rxe's {@code rxe_mr.c}): access checked as
 * {@code ib_check_mr_access}, range as {@code ib_umem_get}, memory from {@link PinnedUserMemory},
 * {@link OdpUserMemory} or {@link DmabufUserMemory} ({@code ibv_reg_dmabuf_mr}), keys {@code index << 8 | key} from the device's {@link KeyTable} (lkey and rkey equal, as
 * rxe makes them). Accesses of the data path hold the read lock of {@link #rw}; deregistration, re-registration
 * and ODP or dma-buf invalidation take the write lock, so they wait for accesses in progress. Deregistration and
 * re-registration also hold {@link #lifecycle} throughout, so they never overlap.
 * <p>
 * The region's STag has a state ({@link State}, rxe's {@code enum rxe_mr_state}, siw's {@code stag_valid}): valid from
 * registration, free once a LOCAL_INV or SEND_WITH_INV invalidated it on a provider that lets invalidations reach
 * regions ({@code RdmaProvider.invalidatesRegions}, siw's {@code siw_invalidate_stag}), invalid from deregistration.
 * Every keyed access reads it once, in the check it already makes; a lease handed out before an invalidation stays
 * usable until it is closed, as Linux lets a message whose memory it resolved before go on. A lease of pinned memory
 * through the region's key may be retained ({@link DmaLease#retain}): it then holds a reference to the memory instead
 * of the read lock, so deregistration and re-registration go on at once and the pages are released when it closes.
 * <p>
 * Why one class of about 620 lines: registration, re-registration, deregistration, invalidation and the data path's
 * leases all turn on {@link #rw}, {@link #lifecycle}, the STag's {@link State} and the region's key-table entry, as
 * {@code rxe_mr.c} keeps them in one file; the memory behind a region is already split out ({@link UserMemory} and
 * its pinned, ODP and dma-buf kinds).
 */
final class MrImpl extends ObjectImpl implements MemoryRegion, HwMr {
    final ReentrantReadWriteLock rw = new ReentrantReadWriteLock();
    /** What closing a lease does: the read lock it held. */
    private final Runnable unlockRead = () -> rw.readLock().unlock();
    final AtomicInteger boundWindows = new AtomicInteger();
    /**
     * The region's lifecycle lock ({@code ib_uverbs_rereg_mr} and {@code ib_uverbs_dereg_mr} both hold the uobject's
     * write lock): deregistration and re-registration run one at a time, each from its check of {@link #released}
     * to its last change, so neither works on memory the other gave back. Taken before {@link #rw}.
     */
    private final ReentrantLock lifecycle = new ReentrantLock();
    /** Set, under {@link #lifecycle}, once {@link #release} has begun to give everything back. */
    private boolean released;
    /** Test hook: runs in {@link #rereg} right after its state check, under {@link #lifecycle}. */
    volatile Runnable reregChecked = () -> {
    };
    private final int index;
    private volatile PdImpl pd;
    private volatile int key;
    private volatile int access;
    private volatile UserMemory umem;
    /** Written under {@link #stateLock}, read by every keyed access without it. */
    private volatile State state = State.VALID;
    /** Orders an invalidation against deregistration, so a deregistered region never looks merely invalidated. */
    private final Object stateLock = new Object();

    /**
     * The states of a region's STag, as rxe's {@code enum rxe_mr_state}: VALID, FREE after an invalidation (an
     * access through the key fails until deregistration: a user region has no REG_MR to make it valid again, only
     * {@code siw_fastreg_mr} and {@code rxe_reg_fast_mr} do that for fast-registration regions), INVALID once
     * deregistration began.
     */
    enum State { VALID, FREE, INVALID }

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
        try (UContext.Call c = ctx.enter()) {
            pd.checkUsable(ctx, "pd");
            checkAccess(ctx.dev, access);
            checkRange(ctx.dev, addr, length, iova);
            return register(ctx, pd, access, mr -> memory(ctx, mr, addr, length, iova, access));
        }
    }

    /** What {@code ibv_reg_dmabuf_mr} accepts ({@code UVERBS_ATTR_REG_DMABUF_MR_ACCESS_FLAGS}); others are EINVAL. */
    static final int DMABUF_ACCESS = Access.LOCAL_WRITE | Access.REMOTE_READ | Access.REMOTE_WRITE
            | Access.REMOTE_ATOMIC | Access.RELAXED_ORDERING;

    /** The access check of {@code UVERBS_METHOD_REG_DMABUF_MR}: its flag set, then {@code ib_check_mr_access}. */
    static void checkDmabufAccess(DeviceImpl dev, int access) {
        if ((access & ~DMABUF_ACCESS) != 0) {
            throw new ErrnoException(Errno.EINVAL, "access " + Access.toString(access) + ": a dma-buf region takes only "
                    + Access.toString(DMABUF_ACCESS) + ", not " + Access.toString(access & ~DMABUF_ACCESS));
        }
        checkAccess(dev, access);
    }

    /**
     * The first check of {@code UVERBS_METHOD_REG_DMABUF_MR}, once its PD was looked up: a device without
     * {@code reg_user_mr_dmabuf} refuses with {@code EOPNOTSUPP}, before the fd is even looked at.
     */
    static void checkDmabufOp(ContextImpl ctx, PdImpl pd) {
        try (UContext.Call c = ctx.enter()) {
            pd.checkUsable(ctx, "pd");
            if (!ctx.dev.provider.hasRegUserMrDmabuf()) {
                throw new ErrnoException(Errno.EOPNOTSUPP, ctx.dev.name() + " (" + ctx.dev.provider.driverName()
                        + ") has no reg_user_mr_dmabuf: ibv_reg_dmabuf_mr is not supported");
            }
        }
    }

    /**
     * {@code ibv_reg_dmabuf_mr}: the checks of {@code UVERBS_METHOD_REG_DMABUF_MR} and {@code ib_umem_dmabuf_get}
     * in their order, then a dynamic attachment on a device that can invalidate translations, a pinned one
     * otherwise.
     */
    static MrImpl registerDmabuf(ContextImpl ctx, PdImpl pd, long offset, long length, long iova, DmaBufHandle fd,
                                 DmaBuf buf, int access) {
        DeviceImpl dev = ctx.dev;
        checkDmabufOp(ctx, pd);
        try (UContext.Call c = ctx.enter()) {
            pd.checkUsable(ctx, "pd");
            if ((offset & (HostMemory.PAGE_SIZE - 1)) != (iova & (HostMemory.PAGE_SIZE - 1))) {
                throw new ErrnoException(Errno.EINVAL, "dma-buf offset 0x" + Long.toHexString(offset) + " and IOVA 0x"
                        + Long.toHexString(iova) + " differ in their page offset");
            }
            checkDmabufAccess(dev, access);
            if (length <= 0) {
                throw new ErrnoException(Errno.EINVAL, "dma-buf region length " + length + " must be > 0");
            }
            if (offset < 0 || offset + length < 0 || Long.compareUnsigned(iova + length, iova) < 0) {
                throw new ErrnoException(Errno.EINVAL, "dma-buf region at offset 0x" + Long.toHexString(offset) + "+"
                        + length + " (iova 0x" + Long.toHexString(iova) + ") overflows");
            }
            if (Long.compareUnsigned(length, dev.attr.maxMrSize()) > 0) {
                throw new ErrnoException(Errno.EINVAL, "dma-buf region length " + length + " exceeds max_mr_size "
                        + dev.attr.maxMrSize());
            }
            if (fd != null && fd.isDestroyed()) {
                throw new ErrnoException(Errno.EBADF, "dma-buf fd " + fd.handle() + " is closed");
            }
            if (buf == null || buf.isReleased()) {
                throw new ErrnoException(Errno.EBADF, "dma-buf " + (buf == null ? "null" : buf.ino() + " was released"));
            }
            if (offset + length > buf.size()) {
                throw new ErrnoException(Errno.EINVAL, "dma-buf region [0x" + Long.toHexString(offset) + ", 0x"
                        + Long.toHexString(offset + length) + ") ends beyond the " + buf.size() + " bytes of dma-buf "
                        + buf.ino());
            }
            boolean dynamic = dev.attr.has(DeviceCap.ON_DEMAND_PAGING);
            return register(ctx, pd, access, mr -> DmabufUserMemory.get(buf, dev.provider.dmaDevice(), offset, length,
                    iova, mr, !dynamic));
        }
    }

    /** Keys, limits and the provider's hook around the memory {@code memory} makes; the caller checked the rest. */
    private static MrImpl register(ContextImpl ctx, PdImpl pd, int access, Function<MrImpl, UserMemory> memory) {
        DeviceImpl dev = ctx.dev;
        dev.mrs.acquire();
        int index = dev.keys.allocMrIndex();
        if (index < 0) {
            dev.mrs.release();
            throw new ErrnoException(Errno.ENOMEM, dev.name() + ": no memory key index left");
        }
        MrImpl mr;
        try {
            mr = new MrImpl(ctx, pd, index, access);
            mr.umem = memory.apply(mr);
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

    /** Everything registration took, given back. */
    private void teardown() {
        synchronized (stateLock) {
            state = State.INVALID;
        }
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

    /** A hold of {@link #lifecycle}, released by closing it. */
    private interface LifecycleHold extends AutoCloseable {
        @Override
        void close();
    }

    private LifecycleHold holdLifecycle() {
        lifecycle.lock();
        return lifecycle::unlock;
    }

    @Override
    void release(RemoveReason reason) {
        try (LifecycleHold h = holdLifecycle()) {
            if (released) {
                throw new ErrnoException(Errno.EINVAL, "mr " + handle() + " was deregistered");
            }
            if (reason == RemoveReason.DESTROY && boundWindows.get() > 0) {
                // IBA 10.6.7.2.6 (rxe_dereg_mr): a region with bound windows cannot be deregistered
                throw new ErrnoException(Errno.EINVAL, "mr " + handle() + " has " + boundWindows.get() + " memory window(s) bound");
            }
            released = true;
            for (MwImpl w : dev.keys.windows()) {
                w.unbindFrom(this);
            }
            dev.provider.deregMr(this);
            teardown();
        }
    }

    @Override
    public void rereg(int flags, ProtectionDomain newPd, long newAddr, long newLength, int newAccess) {
        try (UContext.Call c = ctx.enter(); LifecycleHold h = holdLifecycle()) {
            if (released) {
                throw new ErrnoException(Errno.EINVAL, "mr " + handle() + " was deregistered");
            }
            reregChecked.run();
            if (flags == 0 || (flags & ~ReregFlags.ALL) != 0) {
                throw new ErrnoException(Errno.EINVAL, "rereg flags 0x" + Integer.toHexString(flags));
            }
            // libibverbs verbs.c ibv_rereg_mr: access flags mean nothing without IBV_REREG_MR_CHANGE_ACCESS
            if (newAccess != 0 && (flags & ReregFlags.CHANGE_ACCESS) == 0) {
                throw new ErrnoException(Errno.EINVAL, "rereg access 0x" + Integer.toHexString(newAccess)
                        + " given without IBV_REREG_MR_CHANGE_ACCESS in flags 0x" + Integer.toHexString(flags));
            }
            if ((flags & ReregFlags.CHANGE_TRANSLATION) != 0 && newLength == 0) {
                throw new ErrnoException(Errno.EINVAL, "rereg to length 0 at address 0x" + Long.toHexString(newAddr));
            }
            if (boundWindows.get() > 0) {
                // the errno rxe_dereg_mr gives for the same state (IBA 10.6.7.2.6), so dereg and rereg agree
                throw new ErrnoException(Errno.EINVAL, "mr " + handle() + " has " + boundWindows.get()
                        + " memory window(s) bound");
            }
            PdImpl targetPd = pd;
            if ((flags & ReregFlags.CHANGE_PD) != 0) {
                if (!(newPd instanceof PdImpl p)) {
                    throw new ErrnoException(Errno.EINVAL, "rereg to a PD not of this core: " + newPd);
                }
                p.checkUsable(ctx, "pd");
                targetPd = p;
            }
            boolean dmabuf = umem instanceof DmabufUserMemory;
            if (dmabuf && (flags & ReregFlags.CHANGE_TRANSLATION) != 0) {
                throw new ErrnoException(Errno.EOPNOTSUPP, "mr " + handle() + " is over a dma-buf: its translation is"
                        + " the buffer's and cannot change to address 0x" + Long.toHexString(newAddr));
            }
            int targetAccess = access;
            if ((flags & ReregFlags.CHANGE_ACCESS) != 0) {
                if (dmabuf) {
                    checkDmabufAccess(dev, newAccess);
                } else {
                    checkAccess(dev, newAccess);
                }
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
            } else if (!old.onDemand() && !dmabuf && Access.writable(targetAccess) != Access.writable(access)) {
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

    /** Check of a keyed access, run before faulting and again under the lock. */
    private void checkKeyed(int k, PdImpl qpPd, long a, long len, int acc, WcStatus fail) {
        State s = state;
        if (s == State.INVALID) {
            throw new AccessFault(fail, Errno.EINVAL, "key 0x" + Integer.toHexString(k) + " names a deregistered region");
        }
        if (k != key) {
            throw new AccessFault(fail, Errno.EINVAL, "key 0x" + Integer.toHexString(k) + " is stale: mr "
                    + handle() + " has key 0x" + Integer.toHexString(key));
        }
        if (s == State.FREE) {
            // siw_check_mem: an invalidated STag fails before its PD, access and range are looked at
            throw new AccessFault(fail, Errno.EINVAL, "key 0x" + Integer.toHexString(k) + " was invalidated");
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

    /** {@code mr_check_range}: unsigned, so no address from {@code iova + 2^63} on passes and wraps back inside. */
    private void checkRange(long a, long len, WcStatus fail) {
        UserMemory u = umem;
        IovaRange r = new IovaRange(u.iova, u.length);
        if (!r.covers(a, len)) {
            throw new AccessFault(fail, Errno.EFAULT, "range 0x" + Long.toHexString(a) + "+0x" + Long.toHexString(len)
                    + " is outside mr " + r);
        }
    }

    /** A keyed access (lkey or rkey): every check of {@code lookup_mr} and {@code mr_check_range}. */
    DmaLease lease(int k, PdImpl qpPd, long a, long len, int acc, WcStatus fail) {
        boolean write = (acc & (Access.LOCAL_WRITE | Access.REMOTE_WRITE | Access.REMOTE_ATOMIC)) != 0;
        return lease(a, len, write, fail, true, () -> checkKeyed(k, qpPd, a, len, acc, fail));
    }

    /** An access through a bound window: the window checked everything but the region's range and validity. */
    DmaLease leaseForWindow(long a, long len, boolean write, WcStatus fail) {
        return lease(a, len, write, fail, false, () -> {
            if (state == State.INVALID) {
                throw new AccessFault(fail, Errno.EINVAL, "the window's region was deregistered");
            }
            checkRange(a, len, fail);
        });
    }

    /**
     * Checks, makes present (on demand: faults in; dma-buf: maps) and translates; returns with the read lock held,
     * which the lease releases. A translation that refuses the range fails the access like the range check would.
     *
     * @param keyed through the region's own key (a window's lease is not stable: an invalidation may end it)
     */
    private DmaLease lease(long a, long len, boolean write, WcStatus fail, boolean keyed, Runnable check) {
        UserMemory u = umem;
        if (u instanceof OdpUserMemory odp) {
            check.run(); // before any page is faulted in
            try {
                odp.makePresent(a - u.iova, len, write, rw, check);
            } catch (AccessFault f) {
                throw f;
            } catch (ErrnoException e) {
                throw new AccessFault(fail, e.errno(), "on-demand page fault at 0x" + Long.toHexString(a) + "+" + len
                        + " failed: " + e.getMessage(), e);
            }
        } else if (u instanceof DmabufUserMemory d) {
            check.run(); // before the buffer is mapped
            try {
                d.makePresent(rw, check);
            } catch (AccessFault f) {
                throw f;
            } catch (ErrnoException e) {
                throw new AccessFault(fail, e.errno(), "mapping dma-buf " + d.dmabuf().ino() + " for 0x"
                        + Long.toHexString(a) + "+" + len + " failed: " + e.getMessage(), e);
            }
        } else {
            rw.readLock().lock(); // pinned: the checks under the lock are the ones that count
            try {
                check.run();
                u = umem;
            } catch (RuntimeException e) {
                rw.readLock().unlock();
                throw e;
            }
        }
        try {
            return newLease(u, a, len, keyed, fail);
        } catch (RuntimeException e) {
            rw.readLock().unlock();
            throw e;
        }
    }

    /** Called with the read lock held and the checks passed under it; the lease releases the lock. */
    private DmaLease newLease(UserMemory u, long a, long len, boolean keyed, WcStatus fail) {
        if (umem != u) {
            throw new AccessFault(fail, Errno.EINVAL, "mr " + handle() + " was re-registered during the access to 0x"
                    + Long.toHexString(a));
        }
        List<DmaSegment> segs;
        try {
            segs = u.translate(a - u.iova, len);
        } catch (AccessFault f) {
            throw f;
        } catch (ErrnoException e) {
            throw new AccessFault(fail, e.errno(), "translation of 0x" + Long.toHexString(a) + "+0x" + Long.toHexString(len)
                    + " refused: " + e.getMessage(), e);
        }
        if (keyed && u instanceof PinnedUserMemory p) {
            return new LeaseImpl(segs, dev.bus, unlockRead, p::reference);
        }
        return new LeaseImpl(segs, dev.bus, unlockRead, false);
    }

    int index() {
        return index;
    }

    /** Not deregistered (an invalidated region may still be bound: windows look at its memory, not its STag). */
    boolean isRegistered() {
        return state != State.INVALID;
    }

    @Override
    public boolean isStagValid() {
        return state == State.VALID;
    }

    /**
     * {@code siw_invalidate_stag} once the region was found by its key's index: refused (false) for a region of
     * another PD than {@code qpPd} ({@code -EACCES}) or one whose deregistration began; otherwise the STag is invalid
     * from now on, also when it already was (no state check, as the verbs allow invalidating an invalid STag).
     */
    boolean invalidateStag(PdImpl qpPd) {
        if (qpPd != pd) {
            return false;
        }
        synchronized (stateLock) {
            if (state == State.INVALID) {
                return false;
            }
            state = State.FREE;
        }
        return true;
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
    public Optional<DmaBuf> dmabuf() {
        return umem instanceof DmabufUserMemory d ? Optional.of(d.dmabuf()) : Optional.empty();
    }

    /** The memory behind the region now. */
    UserMemory userMemory() {
        return umem;
    }

    /** The dma-buf memory of a region of {@code regDmabufMr}, or null. */
    DmabufUserMemory dmabufMemory() {
        return umem instanceof DmabufUserMemory d ? d : null;
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
        if (u instanceof DmabufUserMemory d) {
            m.put("dmabuf", Long.toString(d.dmabuf().ino()));
            m.put("dmabuf-offset", "0x" + Long.toHexString(d.addr));
            m.put("importer", d.pinned() ? "pinned" : "dynamic");
            m.put("dmabuf-mapped", Integer.toString(d.dmaMappings()));
            m.put("dmabuf-maps", Long.toString(d.maps()));
            m.put("dmabuf-moves", Long.toString(d.invalidations()));
        } else {
            m.put(u.onDemand() ? "odp-mapped" : "pinned", Long.toString(u.onDemand() ? u.dmaMappings() : u.pinnedPages()));
        }
        return m;
    }
}
