package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwSrq;
import dev.dmaplane.rdma.verbs.DeviceCap;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.PostException;
import dev.dmaplane.rdma.verbs.RecvWr;
import dev.dmaplane.rdma.verbs.SharedReceiveQueue;
import dev.dmaplane.rdma.verbs.SrqAttr;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UContext;

import java.util.ArrayDeque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A shared receive queue ({@code rxe_srq.c}): receive work requests any attached QP consumes. The limit, once
 * armed by {@code ibv_modify_srq(IBV_SRQ_LIMIT)}, raises SRQ_LIMIT_REACHED the first time fewer work requests than
 * the limit remain, and disarms (the responder's {@code get_srq_wqe} in rxe).
 */
final class SrqImpl extends ObjectImpl implements SharedReceiveQueue, HwSrq {
    private final int srqn;
    private final PdImpl pd;
    private final ReentrantLock lock = new ReentrantLock();
    private final ArrayDeque<RecvWqeImpl> queue = new ArrayDeque<>();
    private int maxWr;
    private final int maxSge;
    private int limit;
    private long seq;

    private SrqImpl(ContextImpl ctx, PdImpl pd, int srqn, int maxWr, int maxSge) {
        super(ctx, "srq", pd);
        this.pd = pd;
        this.srqn = srqn;
        this.maxWr = maxWr;
        this.maxSge = maxSge;
    }

    static SrqImpl create(ContextImpl ctx, PdImpl pd, SrqAttr attr) {
        DeviceImpl dev = ctx.dev;
        try (UContext.Call c = ctx.enter()) {
            pd.checkUsable(ctx, "pd");
            if (attr == null) {
                throw new ErrnoException(Errno.EINVAL, "no SRQ attributes");
            }
            if (attr.maxWr() < 1 || attr.maxWr() > dev.attr.maxSrqWr()) {
                throw new ErrnoException(Errno.EINVAL, "SRQ max_wr " + attr.maxWr() + " outside 1.." + dev.attr.maxSrqWr());
            }
            if (attr.maxSge() < 1 || attr.maxSge() > dev.attr.maxSrqSge()) {
                throw new ErrnoException(Errno.EINVAL, "SRQ max_sge " + attr.maxSge() + " outside 1.." + dev.attr.maxSrqSge());
            }
            dev.srqs.acquire();
            SrqImpl srq;
            try {
                srq = new SrqImpl(ctx, pd, dev.allocNumber(dev.srqNumbers(), "SRQ"), attr.maxWr(), attr.maxSge());
            } catch (RuntimeException e) {
                dev.srqs.release();
                throw e;
            }
            try {
                dev.provider.createSrq(srq);
            } catch (RuntimeException e) {
                srq.undo();
                throw e;
            }
            return ctx.register(srq);
        }
    }

    private void undo() {
        dev.srqNumbers().free(srqn);
        dev.srqs.release();
    }

    @Override
    public void postRecv(List<RecvWr> wrs) {
        int posted = 0;
        PostException failure = null;
        try (UContext.Call c = ctx.enter()) {
            if (isDestroyed()) {
                throw new ErrnoException(Errno.EINVAL, "srq " + handle() + " was destroyed");
            }
            lock.lock();
            try {
                for (RecvWr wr : wrs) {
                    if (wr.sgList().size() > maxSge) {
                        failure = new PostException(Errno.EINVAL, wr, posted, wr.sgList().size() + " SGEs exceed the SRQ's max_sge " + maxSge);
                        break;
                    }
                    if (queue.size() >= maxWr) {
                        failure = new PostException(Errno.ENOMEM, wr, posted, "SRQ full (" + maxWr + " work requests)");
                        break;
                    }
                    queue.add(new RecvWqeImpl(seq++, wr, true));
                    posted++;
                }
            } finally {
                lock.unlock();
            }
            if (posted > 0) {
                dev.provider.postSrqRecv(this);
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    /** The next work request for a QP, raising the limit event when the queue falls below an armed limit. */
    RecvWqeImpl take() {
        RecvWqeImpl w;
        boolean event = false;
        lock.lock();
        try {
            w = queue.poll();
            if (w != null && limit > 0 && queue.size() < limit) {
                limit = 0;
                event = true;
            }
        } finally {
            lock.unlock();
        }
        if (event) {
            ctx.queueEvent(EventType.SRQ_LIMIT_REACHED, this, 0);
        }
        return w;
    }

    @Override
    public SrqAttr query() {
        try (UContext.Call c = ctx.enter()) {
            return attr();
        }
    }

    @Override
    public SrqAttr attr() {
        lock.lock();
        try {
            return new SrqAttr(maxWr, maxSge, limit);
        } finally {
            lock.unlock();
        }
    }

    @Override
    public void modify(SrqAttr attr, int mask) {
        try (UContext.Call c = ctx.enter()) {
            if (isDestroyed()) {
                throw new ErrnoException(Errno.EINVAL, "srq " + handle() + " was destroyed");
            }
            if (attr == null || (mask & ~(SrqAttr.MAX_WR | SrqAttr.LIMIT)) != 0) {
                throw new ErrnoException(Errno.EINVAL, "bad SRQ attribute mask 0x" + Integer.toHexString(mask));
            }
            lock.lock();
            try {
                int newMax = maxWr;
                if ((mask & SrqAttr.MAX_WR) != 0) {
                    if (!dev.attr.has(DeviceCap.SRQ_RESIZE)) {
                        throw new ErrnoException(Errno.EINVAL, dev.name() + " cannot resize SRQs");
                    }
                    if (attr.maxWr() < 1 || attr.maxWr() > dev.attr.maxSrqWr() || attr.maxWr() < queue.size()) {
                        throw new ErrnoException(Errno.EINVAL, "SRQ max_wr " + attr.maxWr() + " outside "
                                + Math.max(1, queue.size()) + ".." + dev.attr.maxSrqWr());
                    }
                    newMax = attr.maxWr();
                }
                if ((mask & SrqAttr.LIMIT) != 0 && (attr.srqLimit() < 0 || attr.srqLimit() > newMax)) {
                    throw new ErrnoException(Errno.EINVAL, "SRQ limit " + attr.srqLimit() + " outside 0.." + newMax);
                }
            } finally {
                lock.unlock();
            }
            dev.provider.modifySrq(this, attr, mask);
            lock.lock();
            try {
                if ((mask & SrqAttr.MAX_WR) != 0) {
                    maxWr = Math.max(attr.maxWr(), queue.size());
                }
                if ((mask & SrqAttr.LIMIT) != 0) {
                    limit = attr.srqLimit();
                }
            } finally {
                lock.unlock();
            }
        }
    }

    @Override
    void release(RemoveReason reason) {
        dev.provider.destroySrq(this);
        lock.lock();
        try {
            queue.clear();
        } finally {
            lock.unlock();
        }
        ctx.purgeEvents(this);
        undo();
    }

    @Override
    public int srqn() {
        return srqn;
    }

    @Override
    public PdImpl pd() {
        return pd;
    }

    @Override
    public int queued() {
        lock.lock();
        try {
            return queue.size();
        } finally {
            lock.unlock();
        }
    }

    @Override
    Map<String, String> resAttrs() {
        Map<String, String> m = new LinkedHashMap<>();
        SrqAttr a = attr();
        m.put("srqn", Integer.toString(srqn));
        m.put("pdn", Integer.toString(pd.pdn()));
        m.put("max-wr", Integer.toString(a.maxWr()));
        m.put("queued", Integer.toString(queued()));
        m.put("limit", Integer.toString(a.srqLimit()));
        m.put("users", Integer.toString(uobj.useCount()));
        return m;
    }
}
