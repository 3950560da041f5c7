package dev.dmaplane.rdma.impl;

import dev.dmaplane.dma.BusMaster;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.rdma.RdmaDevice;
import dev.dmaplane.rdma.mad.MadAgent;
import dev.dmaplane.rdma.mad.MadHandler;
import dev.dmaplane.rdma.spi.HwQp;
import dev.dmaplane.rdma.spi.MadDatagram;
import dev.dmaplane.rdma.spi.MemoryAccess;
import dev.dmaplane.rdma.spi.NetdevInfo;
import dev.dmaplane.rdma.spi.QpStateMachine;
import dev.dmaplane.rdma.spi.RdmaDeviceHandle;
import dev.dmaplane.rdma.spi.RdmaProvider;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.EventType;
import dev.dmaplane.rdma.verbs.GidEntry;
import dev.dmaplane.rdma.verbs.NodeType;
import dev.dmaplane.rdma.verbs.PortAttr;
import dev.dmaplane.rdma.verbs.ResourceEntry;
import dev.dmaplane.rdma.verbs.VerbsContext;
import dev.dmaplane.resource.DeviceResources;
import dev.dmaplane.resource.ResourceLimits;
import dev.dmaplane.resource.UContext;
import dev.dmaplane.trace.TraceKind;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Optional;
import java.util.SequencedMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * One registered RDMA device ({@code struct ib_device} with its uverbs device): attributes read once from the
 * provider, ports with their GID tables, the device-wide tables (keys, QP numbers, object numbers), the limits,
 * the contexts open on it, and the unregistration that disassociates them.
 */
final class DeviceImpl implements RdmaDevice, RdmaDeviceHandle {
    /** The first QP number handed out; 0 and 1 are the special QPs, rxe starts its QP pool at 16. */
    static final int MIN_QPN = 16;
    static final int MAX_QPN = 0xFF_FFFF;

    final CoreImpl core;
    final RdmaProvider provider;
    /** The core's QP state machine ({@code ib_modify_qp_is_ok}), for a provider without its own. */
    private final QpStateMachine ibQpStates;
    final DeviceAttr attr;
    final DmaApi dma;
    final BusMaster bus;
    final DeviceResources resources;
    final KeyTable keys = new KeyTable();
    final MemoryAccessImpl memory;
    final Limit pds;
    final Limit cqs;
    final Limit qps;
    final Limit mrs;
    final Limit mws;
    final Limit srqs;
    final Limit ahs;
    private final String name;
    private final int index;
    private final String driverName;
    private final PortImpl[] ports;
    private final IndexPool qpns = new IndexPool(MIN_QPN, MAX_QPN);
    private final IndexPool pdns = new IndexPool(1, 0xFF_FFFF);
    private final IndexPool cqns = new IndexPool(1, 0xFF_FFFF);
    private final IndexPool srqns = new IndexPool(1, 0xFF_FFFF);
    private final ConcurrentHashMap<Integer, QpImpl> qpTable = new ConcurrentHashMap<>();
    private final List<ContextImpl> contexts = new CopyOnWriteArrayList<>();
    private final Object lifecycle = new Object();
    private final MadLayer mad = new MadLayer(this);
    private volatile boolean registered = true;

    DeviceImpl(CoreImpl core, String name, int index, RdmaProvider provider) {
        this.core = core;
        this.name = name;
        this.index = index;
        this.provider = provider;
        this.driverName = provider.driverName();
        this.ibQpStates = new IbQpStates(provider);
        if (driverName == null || driverName.isBlank()) {
            throw new ErrnoException(Errno.EINVAL, name + ": the provider has no driver name");
        }
        if (provider.dmaDevice() == null) {
            throw new ErrnoException(Errno.EINVAL, name + ": the provider names no DMA device");
        }
        this.dma = provider.dmaDevice().dma();
        this.bus = dma.busMaster();
        this.attr = provider.deviceAttr();
        if (attr == null) {
            throw new ErrnoException(Errno.EINVAL, name + ": the provider gives no device attributes");
        }
        if ((attr.pageSizeCap() & HostMemory.PAGE_SIZE) == 0) {
            throw new ErrnoException(Errno.EINVAL, name + ": page_size_cap 0x" + Long.toHexString(attr.pageSizeCap())
                    + " lacks PAGE_SIZE (ib_umem_find_best_pgsz needs it)");
        }
        if (attr.maxMr() > KeyTable.MR_MAX - KeyTable.MR_MIN + 1 || attr.maxMw() > KeyTable.MW_MAX - KeyTable.MW_MIN + 1) {
            throw new ErrnoException(Errno.EINVAL, name + ": max_mr " + attr.maxMr() + " / max_mw " + attr.maxMw()
                    + " exceed the key index space (65536 each)");
        }
        this.ports = new PortImpl[attr.physPortCnt()];
        for (int p = 1; p <= ports.length; p++) {
            PortAttr pa = provider.portAttr(p);
            NetdevInfo nd = provider.netdev(p);
            if (pa == null || nd == null) {
                throw new ErrnoException(Errno.EINVAL, name + ": port " + p + " has no attributes or netdev");
            }
            ports[p - 1] = new PortImpl(p, pa.gidTblLen(), nd);
        }
        // setup_dma_device: every IB device gets a 2 GiB maximum segment (the most this DMA API takes)
        dma.setMaxSegmentSize(Integer.MAX_VALUE);
        this.resources = new DeviceResources(name, core.tracer, ResourceLimits.UNLIMITED);
        this.memory = new MemoryAccessImpl(this);
        this.pds = new Limit(name, "max_pd", attr.maxPd());
        this.cqs = new Limit(name, "max_cq", attr.maxCq());
        this.qps = new Limit(name, "max_qp", attr.maxQp());
        this.mrs = new Limit(name, "max_mr", attr.maxMr());
        this.mws = new Limit(name, "max_mw", attr.maxMw());
        this.srqs = new Limit(name, "max_srq", attr.maxSrq());
        this.ahs = new Limit(name, "max_ah", attr.maxAh());
    }

    /** The QP state machine of a create or modify: the provider's own, or the core's {@code ib_modify_qp_is_ok}. */
    QpStateMachine qpStates() {
        return provider.qpStateMachine().orElse(ibQpStates);
    }

    // RdmaDevice methods

    @Override
    public String name() {
        return name;
    }

    @Override
    public int index() {
        return index;
    }

    @Override
    public String driverName() {
        return driverName;
    }

    @Override
    public NodeType nodeType() {
        return provider.nodeType();
    }

    @Override
    public long nodeGuid() {
        return attr.nodeGuid();
    }

    @Override
    public DeviceAttr attr() {
        return attr;
    }

    @Override
    public boolean isRegistered() {
        return registered;
    }

    @Override
    public SequencedMap<String, Long> hwCounters(int port) {
        if (!registered) {
            throw new ErrnoException(Errno.ENODEV, name + " has been unregistered");
        }
        checkPort(port);
        return Collections.unmodifiableSequencedMap(new LinkedHashMap<>(provider.hwCounters(port)));
    }

    @Override
    public PortAttr portAttr(int port) {
        if (!registered) {
            throw new ErrnoException(Errno.ENODEV, name + " has been unregistered");
        }
        checkPort(port);
        return provider.portAttr(port);
    }

    @Override
    public List<GidEntry> gidTable() {
        List<GidEntry> out = new ArrayList<>();
        for (PortImpl p : ports) {
            out.addAll(p.entries());
        }
        return out;
    }

    @Override
    public VerbsContext open(AddressSpace mm) {
        if (mm == null || mm.isClosed()) {
            throw new ErrnoException(Errno.EINVAL, name + ": open needs a live address space");
        }
        synchronized (lifecycle) {
            if (!registered) {
                throw new ErrnoException(Errno.ENODEV, name + " has been unregistered");
            }
            UContext u = resources.open();
            ContextImpl c = new ContextImpl(this, u, mm);
            contexts.add(c);
            return c;
        }
    }

    @Override
    public MadAgent registerMadAgent(int port, int mgmtClass, int classVersion, MadHandler handler) {
        if (!registered) {
            throw new ErrnoException(Errno.ENODEV, name + " has been unregistered");
        }
        return mad.register(port, mgmtClass, classVersion, handler);
    }

    @Override
    public void madReceived(MadDatagram d) {
        ErrnoException.requireNonNull(d, "MAD datagram");
        checkPort(d.port());
        mad.received(d);
    }

    @Override
    public ResourceLimits limits() {
        return resources.limits();
    }

    @Override
    public void setLimits(ResourceLimits limits) {
        resources.setLimits(limits);
    }

    @Override
    public int contextCount() {
        return resources.contexts().size();
    }

    @Override
    public int objectCount() {
        return resources.objectCount();
    }

    /** The contexts open on the device, in the order they were opened ({@code rdma resource show ctx}). */
    List<ContextImpl> openContexts() {
        return List.copyOf(contexts);
    }

    @Override
    public List<ResourceEntry> resources() {
        List<ResourceEntry> out = new ArrayList<>();
        for (ContextImpl c : contexts) {
            out.addAll(c.resources());
        }
        return out;
    }

    // RdmaDeviceHandle methods

    @Override
    public Optional<HwQp> qp(int qpn) {
        return Optional.ofNullable(qpTable.get(qpn));
    }

    @Override
    public MemoryAccess memory() {
        return memory;
    }

    @Override
    public void portEvent(int port, EventType type) {
        checkPort(port);
        if (type == null || type.scope() != EventType.Scope.PORT) {
            throw new ErrnoException(Errno.EINVAL, name + ": " + type + " is not a port event");
        }
        for (ContextImpl c : contexts) {
            c.queueEvent(type, null, port);
        }
    }

    @Override
    public void netdevChanged(int port) {
        checkPort(port);
        NetdevInfo nd = provider.netdev(port);
        if (nd == null) {
            throw new ErrnoException(Errno.EINVAL, name + ": port " + port + " has no netdev");
        }
        if (ports[port - 1].refresh(nd)) {
            portEvent(port, EventType.GID_CHANGE);
        }
    }

    @Override
    public List<GidEntry> gidTable(int port) {
        checkPort(port);
        return ports[port - 1].entries();
    }

    @Override
    public void fatal(String reason) {
        if (!registered) {
            return;
        }
        core.tracer.emit(TraceKind.DEVICE_FATAL, name, -1, 0, String.valueOf(reason));
        unregister();
    }

    @Override
    public void unregister() {
        synchronized (lifecycle) {
            if (!registered) {
                return;
            }
            registered = false;
        }
        core.removing(this); // ib_unregister_device: the clients' remove (rdma_cm's DEVICE_REMOVAL) first
        mad.shutdown();
        // ib_uverbs_free_hw_resources: each file gets DEVICE_FATAL, then its objects go (RDMA_REMOVE_DRIVER_REMOVE)
        for (ContextImpl c : contexts) {
            c.queueEvent(EventType.DEVICE_FATAL, null, 0);
        }
        resources.disassociateAll();
        core.remove(this);
    }

    void checkPort(int port) {
        if (port < 1 || port > ports.length) {
            throw new ErrnoException(Errno.EINVAL, name + " has no port " + port + " (1.." + ports.length + ")");
        }
    }

    PortImpl port(int port) {
        checkPort(port);
        return ports[port - 1];
    }

    @Override
    public int portCount() {
        return ports.length;
    }

    /** The provider's port attributes, for calls already inside a context. */
    PortAttr portAttrOf(int port) {
        checkPort(port);
        return provider.portAttr(port);
    }

    int allocQpn(QpImpl qp) {
        int n = qpns.alloc();
        if (n < 0) {
            throw new ErrnoException(Errno.ENOMEM, name + ": no QP number left");
        }
        return n;
    }

    /** The QP numbered {@code qpn} on this device, or null. */
    QpImpl queuePair(int qpn) {
        return qpTable.get(qpn);
    }

    void publishQp(QpImpl qp) {
        qpTable.put(qp.qpNum(), qp);
    }

    void forgetQp(QpImpl qp) {
        qpTable.remove(qp.qpNum(), qp);
        qpns.free(qp.qpNum());
    }

    int allocNumber(IndexPool pool, String what) {
        int n = pool.alloc();
        if (n < 0) {
            throw new ErrnoException(Errno.ENOMEM, name + ": no " + what + " number left");
        }
        return n;
    }

    IndexPool pdNumbers() {
        return pdns;
    }

    IndexPool cqNumbers() {
        return cqns;
    }

    IndexPool srqNumbers() {
        return srqns;
    }

    void forget(ContextImpl c) {
        contexts.remove(c);
    }

    @Override
    public String toString() {
        return "rdma device " + name + " (" + driverName + ")";
    }
}
