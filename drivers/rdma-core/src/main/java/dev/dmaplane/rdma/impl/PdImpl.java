package dev.dmaplane.rdma.impl;

import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufHandle;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwPd;
import dev.dmaplane.rdma.verbs.AddressHandle;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.MemoryRegion;
import dev.dmaplane.rdma.verbs.MemoryWindow;
import dev.dmaplane.rdma.verbs.MwType;
import dev.dmaplane.rdma.verbs.ProtectionDomain;
import dev.dmaplane.rdma.verbs.QpInitAttr;
import dev.dmaplane.rdma.verbs.QueuePair;
import dev.dmaplane.rdma.verbs.SharedReceiveQueue;
import dev.dmaplane.rdma.verbs.SrqAttr;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UContext;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A protection domain. Regions count against it by hand rather than as handle-table dependencies, because
 * {@code ibv_rereg_mr} can move a region to another PD.
 */
final class PdImpl extends ObjectImpl implements ProtectionDomain, HwPd {
    private final int pdn;
    final AtomicInteger regions = new AtomicInteger();

    private PdImpl(ContextImpl ctx, int pdn) {
        super(ctx, "pd");
        this.pdn = pdn;
    }

    static PdImpl create(ContextImpl ctx) {
        DeviceImpl dev = ctx.dev;
        try (UContext.Call c = ctx.enter()) {
            dev.pds.acquire();
            PdImpl pd;
            try {
                pd = new PdImpl(ctx, dev.allocNumber(dev.pdNumbers(), "PD"));
            } catch (RuntimeException e) {
                dev.pds.release();
                throw e;
            }
            try {
                dev.provider.allocPd(pd);
            } catch (RuntimeException e) {
                pd.undo();
                throw e;
            }
            return ctx.register(pd);
        }
    }

    private void undo() {
        dev.pdNumbers().free(pdn);
        dev.pds.release();
    }

    @Override
    void release(RemoveReason reason) {
        if (reason == RemoveReason.DESTROY && regions.get() > 0) {
            throw new ErrnoException(Errno.EBUSY, "pd " + handle() + " is in use by " + regions.get() + " memory region(s)");
        }
        dev.provider.deallocPd(this);
        undo();
    }

    @Override
    Map<String, String> resAttrs() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("pdn", Integer.toString(pdn));
        m.put("users", Integer.toString(uobj.useCount() + regions.get()));
        return m;
    }

    @Override
    public int pdn() {
        return pdn;
    }

    @Override
    public MemoryRegion regMr(long addr, long length, long iova, int access) {
        return MrImpl.register(ctx, this, addr, length, iova, access);
    }

    @Override
    public MemoryRegion regDmabufMr(long offset, long length, long iova, DmaBufHandle fd, int access) {
        MrImpl.checkDmabufOp(ctx, this);
        if (fd == null) {
            throw new ErrnoException(Errno.EBADF, "dma-buf fd null");
        }
        return MrImpl.registerDmabuf(ctx, this, offset, length, iova, fd, fd.dmabuf(), access);
    }

    @Override
    public MemoryRegion regDmabufMr(long offset, long length, long iova, int fd, int access) {
        MrImpl.checkDmabufOp(ctx, this); // before dma_buf_get(fd): a device without the op never looks at it
        return regDmabufMr(offset, length, iova, DmaBufs.handle(ctx.mm.files(), fd), access);
    }

    @Override
    public MemoryRegion regDmabufMr(long offset, long length, long iova, DmaBuf dmabuf, int access) {
        return MrImpl.registerDmabuf(ctx, this, offset, length, iova, null, dmabuf, access);
    }

    @Override
    public MemoryWindow allocMw(MwType type) {
        return MwImpl.create(ctx, this, type);
    }

    @Override
    public QueuePair createQp(QpInitAttr attr) {
        return QpImpl.create(ctx, this, attr);
    }

    @Override
    public SharedReceiveQueue createSrq(SrqAttr attr) {
        return SrqImpl.create(ctx, this, attr);
    }

    @Override
    public AddressHandle createAh(AhAttr attr) {
        return AhImpl.create(ctx, this, attr);
    }
}
