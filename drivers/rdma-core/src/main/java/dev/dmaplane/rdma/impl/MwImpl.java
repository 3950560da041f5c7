package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.AccessFault;
import dev.dmaplane.rdma.spi.DmaLease;
import dev.dmaplane.rdma.spi.HwMw;
import dev.dmaplane.rdma.verbs.Access;
import dev.dmaplane.rdma.verbs.DeviceCap;
import dev.dmaplane.rdma.verbs.MemoryWindow;
import dev.dmaplane.rdma.verbs.MwBindInfo;
import dev.dmaplane.rdma.verbs.MwType;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SendWr;
import dev.dmaplane.rdma.verbs.WcStatus;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UContext;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A memory window, as rdma_rxe's {@code rxe_mw.c} keeps it: type 1 windows start VALID (bound to nothing) and are
 * bound by {@code ibv_bind_mw}; type 2 windows start FREE, are bound by a BIND_MW work request to the posting QP
 * and freed again by an invalidation. Binding checks follow {@code rxe_check_bind_mw} with its IBA rule numbers;
 * a bind sets the window's new key from the low byte the consumer chose.
 */
final class MwImpl extends ObjectImpl implements MemoryWindow, HwMw {
    enum State { VALID, FREE, INVALID }

    /** The access a window may grant. */
    static final int SUPPORTED = Access.REMOTE | Access.ZERO_BASED;

    private final MwType type;
    private final PdImpl pd;
    private final int index;
    // guarded by this
    private int rkey;
    private int userRkey;
    private State state;
    private MrImpl mr;
    private QpImpl qp;
    private long addr;
    private long length;
    private int access;

    private MwImpl(ContextImpl ctx, PdImpl pd, MwType type, int index) {
        super(ctx, "mw", pd);
        this.type = type;
        this.pd = pd;
        this.index = index;
        this.rkey = ctx.dev.keys.nextKey(index);
        this.userRkey = rkey;
        this.state = type == MwType.TYPE_2 ? State.FREE : State.VALID;
    }

    static MwImpl create(ContextImpl ctx, PdImpl pd, MwType type) {
        DeviceImpl dev = ctx.dev;
        try (UContext.Call c = ctx.enter()) {
            pd.checkUsable(ctx, "pd");
            if (type == null) {
                throw new ErrnoException(Errno.EINVAL, "memory window type is null");
            }
            DeviceCap need = type == MwType.TYPE_1 ? DeviceCap.MEM_WINDOW : DeviceCap.MEM_WINDOW_TYPE_2B;
            if (!dev.attr.has(need)) {
                throw new ErrnoException(Errno.EOPNOTSUPP, dev.name() + " has no " + type + " memory windows");
            }
            dev.mws.acquire();
            int index = dev.keys.allocMwIndex();
            if (index < 0) {
                dev.mws.release();
                throw new ErrnoException(Errno.ENOMEM, dev.name() + ": no window key index left");
            }
            MwImpl mw;
            try {
                mw = new MwImpl(ctx, pd, type, index);
                dev.provider.allocMw(mw);
            } catch (RuntimeException e) {
                dev.keys.free(index);
                dev.mws.release();
                throw e;
            }
            ctx.register(mw);
            dev.keys.publish(index, mw);
            return mw;
        }
    }

    @Override
    public int bind(QueuePair q, MwBindInfo info, long wrId, int sendFlags) {
        // ibv_bind_mw in verbs.h, then the rxe provider's rxe_bind_mw, which turns it into a BIND_MW work request
        if (type != MwType.TYPE_1) {
            throw new ErrnoException(Errno.EINVAL, "ibv_bind_mw binds type 1 windows; post a BIND_MW work request for type 2");
        }
        if (info == null) {
            throw new ErrnoException(Errno.EINVAL, "no bind info");
        }
        if (info.mr() == null && (info.addr() != 0 || info.length() != 0)) {
            throw new ErrnoException(Errno.EINVAL, "bind info has an address or length but no memory region");
        }
        if (info.mr() != null && info.mr().pd() != pd) {
            throw new ErrnoException(Errno.EPERM, "the memory region is in another PD than the window");
        }
        if ((info.mwAccessFlags() & Access.ZERO_BASED) != 0) {
            throw new ErrnoException(Errno.EINVAL, "type 1 windows cannot be zero based");
        }
        if (!(q instanceof QpImpl qpi)) {
            throw new ErrnoException(Errno.EINVAL, "not a QP of this core: " + q);
        }
        int next;
        synchronized (this) {
            next = SendWr.incRkey(userRkey);
        }
        // posted without holding the window: the provider may execute the bind at once, on another thread
        qpi.postInternal(new SendWr.BindMw(wrId, sendFlags, this, next, info));
        synchronized (this) {
            userRkey = next;
        }
        return next;
    }

    /** Executes a BIND_MW work request ({@code rxe_bind_mw}); MW_BIND_ERR on any refusal. */
    synchronized WcStatus doBind(QpImpl q, SendWqeImpl wqe) {
        SendWr.BindMw wr = (SendWr.BindMw) wqe.wr();
        MwBindInfo info = wr.bindInfo();
        if (state == State.INVALID || wqe.mwRkeyAtPost != rkey) {
            return WcStatus.MW_BIND_ERR;
        }
        MrImpl target = null;
        if (info.length() != 0) {
            if (!(info.mr() instanceof MrImpl m) || !m.isRegistered() || m.lkey() != wqe.mrLkeyAtPost) {
                return WcStatus.MW_BIND_ERR;
            }
            target = m;
        }
        int acc = info.mwAccessFlags();
        if ((acc & ~SUPPORTED) != 0) {
            return WcStatus.MW_BIND_ERR;
        }
        if (type == MwType.TYPE_1) {
            if (state != State.VALID || (acc & Access.ZERO_BASED) != 0) {          // o10-36.2.2
                return WcStatus.MW_BIND_ERR;
            }
        } else {
            if (state != State.FREE || q.pd() != pd || target == null) {           // o10-37.2.30, C10-72, o10-37.2.40
                return WcStatus.MW_BIND_ERR;
            }
        }
        if (target != null) {
            int mrAccess = target.access();
            if ((mrAccess & Access.ZERO_BASED) != 0 || (mrAccess & Access.MW_BIND) == 0) {   // C10-73
                return WcStatus.MW_BIND_ERR;
            }
            if ((acc & (Access.REMOTE_WRITE | Access.REMOTE_ATOMIC)) != 0 && (mrAccess & Access.LOCAL_WRITE) == 0) {
                return WcStatus.MW_BIND_ERR;                                           // C10-74
            }
            // C10-75, compared unsigned as mr_check_range compares (a zero-based window counts from the region's start)
            IovaRange region = new IovaRange((acc & Access.ZERO_BASED) != 0 ? 0 : target.iova(), target.length());
            if (!region.covers((acc & Access.ZERO_BASED) != 0 ? 0 : info.addr(), info.length())) {
                return WcStatus.MW_BIND_ERR;
            }
        }
        rkey = (rkey & ~0xFF) | (wr.rkey() & 0xFF);
        if (type == MwType.TYPE_2) {
            userRkey = rkey;
        }
        access = acc;
        state = State.VALID;
        addr = info.addr();
        length = info.length();
        if (mr != null) {
            mr.boundWindows.decrementAndGet();
        }
        mr = target;
        if (target != null) {
            target.boundWindows.incrementAndGet();
        }
        qp = type == MwType.TYPE_2 ? q : null;
        return WcStatus.SUCCESS;
    }

    /**
     * {@code rxe_invalidate_mw}: only a valid type 2 window with this exact key (o10-37.2.26); a remote invalidation
     * (send with invalidate) must also come through the QP the window is bound to.
     */
    synchronized boolean invalidate(QpImpl q, int key, boolean remote) {
        if (key != rkey || state != State.VALID || type == MwType.TYPE_1 || q.pd() != pd || (remote && qp != q)) {
            return false;
        }
        unbindLocked(State.FREE);
        return true;
    }

    private void unbindLocked(State to) {
        if (mr != null) {
            mr.boundWindows.decrementAndGet();
        }
        mr = null;
        qp = null;
        addr = 0;
        length = 0;
        access = 0;
        state = to;
    }

    /** The region is going away: a window bound to it is unbound. */
    synchronized void unbindFrom(MrImpl region) {
        if (mr == region) {
            unbindLocked(type == MwType.TYPE_2 ? State.FREE : State.VALID);
        }
    }

    /** The QP is going away: a type 2 window bound through it is freed. */
    synchronized void unbindFrom(QpImpl q) {
        if (qp == q) {
            unbindLocked(State.FREE);
        }
    }

    /** A remote access through the window ({@code rxe_lookup_mw} and the range checks of the responder). */
    DmaLease lease(QpImpl q, int key, long a, long len, int acc) {
        MrImpl target;
        long mrAddr;
        synchronized (this) {
            WcStatus f = WcStatus.REM_ACCESS_ERR;
            if (key != rkey || state != State.VALID) {
                throw new AccessFault(f, Errno.EINVAL, "rkey 0x" + Integer.toHexString(key) + " names no valid window");
            }
            if (q.pd() != pd || (type == MwType.TYPE_2 && qp != q)) {
                throw new AccessFault(f, Errno.EACCES, "window 0x" + Integer.toHexString(key) + " is not usable from qp " + q.qpNum());
            }
            if (length == 0 || mr == null || (acc & access) != acc) {
                throw new AccessFault(f, Errno.EACCES, "window 0x" + Integer.toHexString(key) + " grants "
                        + Access.toString(access) + " over " + length + " bytes");
            }
            boolean zb = (access & Access.ZERO_BASED) != 0;
            IovaRange window = new IovaRange(zb ? 0 : addr, length);
            if (!window.covers(a, len)) {
                throw new AccessFault(f, Errno.EFAULT, "range 0x" + Long.toHexString(a) + "+0x" + Long.toHexString(len)
                        + " is outside window 0x" + Integer.toHexString(key) + " " + window);
            }
            target = mr;
            mrAddr = zb ? addr + a : a;
        }
        boolean write = (acc & (Access.REMOTE_WRITE | Access.REMOTE_ATOMIC)) != 0;
        return target.leaseForWindow(mrAddr, len, write, WcStatus.REM_ACCESS_ERR);
    }

    @Override
    void release(RemoveReason reason) {
        synchronized (this) {
            unbindLocked(State.INVALID);
        }
        dev.keys.unpublish(index);
        dev.provider.deallocMw(this);
        dev.keys.free(index);
        dev.mws.release();
    }

    @Override
    public MwType type() {
        return type;
    }

    @Override
    public PdImpl pd() {
        return pd;
    }

    @Override
    public synchronized int rkey() {
        return userRkey;
    }

    /** The key the window has in the HCA now. */
    synchronized int hwRkey() {
        return rkey;
    }

    @Override
    public synchronized boolean isBound() {
        return mr != null;
    }

    synchronized State state() {
        return state;
    }

    @Override
    Map<String, String> resAttrs() {
        Map<String, String> m = new LinkedHashMap<>();
        synchronized (this) {
            m.put("rkey", "0x" + Integer.toHexString(rkey));
            m.put("type", type == MwType.TYPE_1 ? "1" : "2");
            m.put("state", state.name());
            m.put("pdn", Integer.toString(pd.pdn()));
            if (mr != null) {
                m.put("mrn", Integer.toString(mr.index()));
                m.put("len", Long.toString(length));
            }
        }
        return m;
    }
}
