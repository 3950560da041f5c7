package dev.dmaplane.rdma.impl;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.spi.HwAh;
import dev.dmaplane.rdma.verbs.AddressHandle;
import dev.dmaplane.rdma.verbs.AhAttr;
import dev.dmaplane.rdma.verbs.GidEntry;
import dev.dmaplane.rdma.verbs.LinkLayer;
import dev.dmaplane.resource.RemoveReason;
import dev.dmaplane.resource.UContext;

import java.util.LinkedHashMap;
import java.util.Map;

/** An address handle ({@code ib_create_user_ah}, with {@code rdma_check_ah_attr} and the source GID lookup). */
final class AhImpl extends ObjectImpl implements AddressHandle, HwAh {
    private final PdImpl pd;
    private final AhAttr attr;
    private final GidEntry sgid;

    private AhImpl(ContextImpl ctx, PdImpl pd, AhAttr attr, GidEntry sgid) {
        super(ctx, "ah", pd);
        this.pd = pd;
        this.attr = attr;
        this.sgid = sgid;
    }

    /**
     * Checks an address vector for {@code port}: a RoCE port needs a GRH whose source GID index names a valid
     * entry ({@code rdma_check_ah_attr}, {@code rdma_fill_sgid_attr}); the other fields must fit their wire sizes.
     *
     * @return the source GID entry
     */
    static GidEntry check(DeviceImpl dev, AhAttr a) {
        if (a == null) {
            throw new ErrnoException(Errno.EINVAL, "no address vector");
        }
        dev.checkPort(a.portNum());
        if (a.sl() < 0 || a.sl() > 15 || a.srcPathBits() < 0 || a.srcPathBits() > 127 || a.staticRate() < 0
                || a.dlid() < 0 || a.dlid() > 0xFFFF) {
            throw new ErrnoException(Errno.EINVAL, "address vector field out of range: " + a);
        }
        boolean roce = dev.portAttrOf(a.portNum()).linkLayer() == LinkLayer.ETHERNET;
        if (roce && !a.isGlobal()) {
            throw new ErrnoException(Errno.EINVAL, "a RoCE address vector needs a GRH (is_global)");
        }
        if (!a.isGlobal()) {
            return null;
        }
        var g = a.grh();
        if (g.dgid() == null || g.flowLabel() < 0 || g.flowLabel() > 0xFFFFF || g.hopLimit() < 0 || g.hopLimit() > 255
                || g.trafficClass() < 0 || g.trafficClass() > 255) {
            throw new ErrnoException(Errno.EINVAL, "GRH field out of range: " + g);
        }
        PortImpl port = dev.port(a.portNum());
        if (g.sgidIndex() < 0 || g.sgidIndex() >= port.size()) {
            throw new ErrnoException(Errno.EINVAL, "sgid index " + g.sgidIndex() + " outside the GID table of "
                    + port.size() + " on port " + a.portNum());
        }
        GidEntry e = port.entry(g.sgidIndex());
        if (e == null) {
            throw new ErrnoException(Errno.EINVAL, "GID table entry " + g.sgidIndex() + " of port " + a.portNum() + " is empty");
        }
        return e;
    }

    static AhImpl create(ContextImpl ctx, PdImpl pd, AhAttr attr) {
        DeviceImpl dev = ctx.dev;
        try (UContext.Call c = ctx.enter()) {
            pd.checkUsable(ctx, "pd");
            GidEntry sgid = check(dev, attr);
            dev.ahs.acquire();
            AhImpl ah;
            try {
                ah = new AhImpl(ctx, pd, attr, sgid);
                dev.provider.createAh(ah);
            } catch (RuntimeException e) {
                dev.ahs.release();
                throw e;
            }
            return ctx.register(ah);
        }
    }

    @Override
    void release(RemoveReason reason) {
        dev.provider.destroyAh(this);
        dev.ahs.release();
    }

    @Override
    public PdImpl pd() {
        return pd;
    }

    @Override
    public AhAttr attr() {
        return attr;
    }

    @Override
    public GidEntry sgid() {
        return sgid;
    }

    @Override
    Map<String, String> resAttrs() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("pdn", Integer.toString(pd.pdn()));
        m.put("port", Integer.toString(attr.portNum()));
        if (attr.isGlobal()) {
            m.put("dgid", attr.grh().dgid().toString());
            m.put("sgid-index", Integer.toString(attr.grh().sgidIndex()));
        }
        return m;
    }
}
