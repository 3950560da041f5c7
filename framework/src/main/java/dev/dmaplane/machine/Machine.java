package dev.dmaplane.machine;

import dev.dmaplane.device.Device;
import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.dma.DmaDebug;
import dev.dmaplane.dma.DmaTraffic;
import dev.dmaplane.dma.PeerRouter;
import dev.dmaplane.dma.impl.DmaSubsystem;
import dev.dmaplane.dma.impl.Swiotlb;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fs.MemFs;
import dev.dmaplane.hw.DeviceModel;
import dev.dmaplane.hw.impl.ModelBus;
import dev.dmaplane.iommu.Iommu;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.iommu.IommuDomainType;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.mem.PhysicalAddressMap;
import dev.dmaplane.mem.PhysicalRegion;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.ConfigSpace;
import dev.dmaplane.pci.HostBridge;
import dev.dmaplane.pci.MachineSpec;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciRoute;
import dev.dmaplane.pci.PciTopology;
import dev.dmaplane.pci.TopologyLoader;
import dev.dmaplane.trace.Tracer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.Objects;
import java.util.ServiceConfigurationError;
import java.util.ServiceLoader;
import java.util.function.Function;

/**
 * One simulated host, booted from a machine file: RAM, the PCI hierarchy with its emulated devices, the IOMMU
 * with groups derived from ACS, the DMA API of every function, the driver core and the trace. Works on a plain
 * classpath; the OSGi runtime wraps one instance in a service.
 */
public final class Machine implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Machine.class);

    private final Tracer tracer;
    private final HostMemory memory;
    private final PhysicalAddressMap physical;
    private final PciTopology pci;
    private final Iommu iommu;
    private final DmaDebug dmaDebug;
    private final DmaSubsystem dma;
    private final DeviceCore devices;
    private final ModelBus models;
    /** The physical-map region of each memory BAR; filled at start, read-only afterwards. */
    private final Map<Bar, BarRegion> barRegions = new IdentityHashMap<>();
    /** The per-machine cores of the layers above, in creation order; guarded by {@code this}. */
    private final Map<Class<?>, Object> attachments = new LinkedHashMap<>();
    private long pciWindowReservations;
    private volatile boolean closed;

    /**
     * Boot-time choices that are not part of the machine file.
     *
     * @param dmaDebug         whether dma-debug checks and records every mapping
     * @param swiotlbMiB       bounce buffer size, a non-negative multiple of 2 MiB
     * @param classPathModels  whether the {@link DeviceModel}s {@link ServiceLoader} finds on the class path are
     *                         loaded at boot; the OSGi runtime boots without them and adds model services as they come
     */
    public record Options(boolean dmaDebug, int swiotlbMiB, boolean classPathModels) {
        /** dma-debug on, 4 MiB of swiotlb, the class path's device models. */
        public static final Options DEFAULT = new Options(true, 4, true);

        public Options {
            if (swiotlbMiB < 0 || swiotlbMiB % 2 != 0) {
                throw new ErrnoException(Errno.EINVAL, "swiotlb size must be a non-negative multiple of 2 MiB, not " + swiotlbMiB);
            }
        }

        /** With the class path's device models. */
        public Options(boolean dmaDebug, int swiotlbMiB) {
            this(dmaDebug, swiotlbMiB, true);
        }

        /** These options with or without the class path's device models. */
        public Options withClassPathModels(boolean load) {
            return new Options(dmaDebug, swiotlbMiB, load);
        }
    }

    private Machine(PciTopology pci, Options options) {
        this.pci = Objects.requireNonNull(pci, "topology");
        MachineSpec spec = pci.machine();
        this.tracer = new Tracer();
        this.memory = new HostMemory(spec.memoryBytes());
        this.physical = new PhysicalAddressMap(memory);
        Swiotlb swiotlb = options.swiotlbMiB() == 0 ? null : new Swiotlb(memory, options.swiotlbMiB() / 2);
        this.iommu = new Iommu(spec.iommu().enabled(),
                spec.iommu().defaultDomain() == MachineSpec.DefaultDomain.IDENTITY ? IommuDomainType.IDENTITY : IommuDomainType.DMA,
                spec.iommu().dirtyTracking(), tracer);
        this.dmaDebug = new DmaDebug(tracer, options.dmaDebug());
        this.dma = new DmaSubsystem(physical, iommu, dmaDebug, tracer, swiotlb);
        this.devices = new DeviceCore(tracer);
        devices.onUnbind(dma::unbound);
        this.models = new ModelBus(pci, new ModelBus.Slots() {
            @Override
            public void arrived(PciFunction fn) {
                devices.addDevice(fn, dma.attach(fn));
            }

            @Override
            public void left(PciFunction fn) {
                if (fn.isPresent()) {
                    devices.removeDevice(fn);
                }
                dma.detach(fn);
            }
        });
    }

    /** Boots the machine a YAML or JSON machine file describes. */
    public static Machine boot(Path machineFile) {
        return boot(TopologyLoader.load(machineFile), Options.DEFAULT);
    }

    /** Boots the embedded default machine: a GPU and an RDMA HCA under one switch, a second HCA, an NVMe. */
    public static Machine bootDefault() {
        return boot(TopologyLoader.defaultMachine(), Options.DEFAULT);
    }

    /**
     * Boots a machine on a built topology; on failure everything taken so far is released.
     *
     * @throws ErrnoException as the topology, the device models or the IOMMU refuse
     */
    public static Machine boot(PciTopology topology, Options options) {
        Machine m;
        try {
            m = new Machine(topology, options);
        } catch (RuntimeException e) {
            topology.close();
            throw e;
        }
        try {
            m.start(options);
            return m;
        } catch (RuntimeException e) {
            m.close();
            throw e;
        }
    }

    private void start(Options options) {
        if (iommu.enabled()) {
            for (List<PciFunction> group : pci.isolationGroups()) {
                reservePciWindows(iommu.addGroup(group).defaultDomain(), group);
            }
        }
        for (PciFunction fn : pci.functions()) {
            for (Bar bar : fn.bars()) {
                if (bar.backing() instanceof Bar.Memory mem) {
                    BarRegion region = new BarRegion(fn.name() + " BAR" + bar.index(), fn, bar, mem);
                    physical.add(region);
                    barRegions.put(bar, region);
                }
            }
        }
        models.boot(options.classPathModels() ? classPathModels() : List.of());
        dma.setPeerRouter(new PeerRouter() {
            @Override
            public Route route(Device requester, long busAddr) {
                return routeBelowRootComplex(requester, busAddr);
            }

            @Override
            public long epoch() {
                return pci.decodeEpoch();
            }

            @Override
            public void unsupportedRequest(Device requester, long busAddr, int size, boolean posted, PhysicalRegion at) {
                if (requester instanceof PciFunction fn) {
                    if (at instanceof BarRegion bar) {
                        pci.unsupportedRequest(fn, bar.fn(), busAddr, size, posted);
                    } else {
                        pci.unsupportedRequest(fn, busAddr, size, posted);
                    }
                }
            }
        });
        for (PciFunction fn : pci.functions()) {
            if (fn.absence().isEmpty()) {
                devices.addDevice(fn, dma.attach(fn));
            } else {
                LOG.info("{} is absent: {}", fn.bdf(), fn.absence().get());
            }
        }
        LOG.info("machine up: {} MiB RAM, {} PCI functions, IOMMU {}", memory.size() >> 20, pci.functions().size(),
                iommu.enabled() ? "on (" + iommu.groups().size() + " groups)" : "off");
    }

    /**
     * Keeps a group's DMA domain's IOVAs out of the windows of its devices' host bridge, as {@code iommu_dma_init_domain}
     * does with {@code iova_reserve_pci_windows} ({@code drivers/iommu/dma-iommu.c}): an IOVA there would be claimed
     * by a bridge or switch below the host bridge and routed to a peer's BAR instead of reaching the IOMMU. Each
     * domain reserves only its own host bridge's few windows, so boot does work linear in the number of groups.
     */
    private void reservePciWindows(IommuDomain domain, List<PciFunction> group) {
        if (domain.type() != IommuDomainType.DMA) {
            return;
        }
        Set<HostBridge> hosts = Collections.newSetFromMap(new IdentityHashMap<>());
        for (PciFunction fn : group) {
            HostBridge hb = fn.pciBus().hostBridge();
            if (hosts.add(hb)) {
                for (ConfigSpace.Window w : hb.windows()) {
                    domain.iovaAllocator().reserve(w.base(), w.limit() + 1);
                    pciWindowReservations++;
                }
            }
        }
    }

    private static List<DeviceModel> classPathModels() {
        List<DeviceModel> found = new ArrayList<>();
        try {
            ServiceLoader.load(DeviceModel.class, Machine.class.getClassLoader()).forEach(found::add);
        } catch (ServiceConfigurationError e) {
            throw new ErrnoException(Errno.EINVAL, "loading the device models on the class path failed: " + e.getMessage(), e);
        }
        return found;
    }

    /**
     * A device model arrives: every function whose machine-file entry names it gets its hardware, and the driver
     * core probes it (hot-add).
     *
     * @throws ErrnoException {@code EINVAL} for a null model or a bad name, {@code EEXIST} if a model of that name
     *                        is loaded, {@code ENODEV} after {@link #close}
     */
    public void addModel(DeviceModel model) {
        models.add(model);
    }

    /**
     * A device model leaves: each of its devices is quiesced and surprise-removed, as {@link #hotUnplug} does
     * (drivers removed, leaked mappings reclaimed), and its functions read as absent hardware.
     *
     * @return whether {@code model} was loaded
     */
    public boolean removeModel(DeviceModel model) {
        return models.remove(model);
    }

    /** The names of the loaded device models. */
    public List<String> modelNames() {
        return models.names();
    }

    /** IOVA reservations made for PCI windows at boot, summed over the DMA domains: linear in the groups. */
    long pciWindowReservations() {
        return pciWindowReservations;
    }

    public Tracer tracer() {
        return tracer;
    }

    public HostMemory memory() {
        return memory;
    }

    /** The physical address map: RAM and device memory BARs. */
    public PhysicalAddressMap physical() {
        return physical;
    }

    public PciTopology pci() {
        return pci;
    }

    public Iommu iommu() {
        return iommu;
    }

    public DmaDebug dmaDebug() {
        return dmaDebug;
    }

    /** The driver core: devices, drivers, binding. */
    public DeviceCore devices() {
        return devices;
    }

    /** A new process address space on this machine's RAM ({@code mm_alloc}). */
    public AddressSpace newAddressSpace(String name) {
        return new AddressSpace(memory, tracer, name);
    }

    /** Mounts a new in-memory file system; with {@code dax} its files are host frames mapped directly (fsdax). */
    public MemFs mount(String name, boolean dax) {
        return new MemFs(memory, tracer, name, dax);
    }

    /**
     * The machine's one instance of {@code type}, made by {@code create} on the first call (the per-machine state
     * of a subsystem the framework does not know, as a kernel subsystem keeps its own lists per host): the dma-buf
     * and p2pdma cores live here, so every user of this machine, on a plain class path or in OSGi, sees the same
     * one. An instance that is {@link AutoCloseable} is closed with the machine, after the drivers are unbound.
     *
     * @throws ErrnoException {@code EINVAL} when {@code create} returns null or no {@code type}, {@code ENODEV}
     *                        after {@link #close}; nothing is kept then
     */
    public synchronized <T> T attachment(Class<T> type, Function<? super Machine, ? extends T> create) {
        if (type == null || create == null) {
            throw new ErrnoException(Errno.EINVAL, "a machine attachment needs a type and a factory, not "
                    + type + " and " + create);
        }
        ErrnoException.check(!closed, Errno.ENODEV, "machine is closed: no " + type.getName() + " attaches to it");
        Object existing = attachments.get(type);
        if (existing != null) {
            return type.cast(existing);
        }
        T made = create.apply(this);
        ErrnoException.check(type.isInstance(made), Errno.EINVAL, "the factory of the machine's " + type.getName()
                + " made " + (made == null ? "nothing" : "a " + made.getClass().getName()));
        attachments.put(type, made);
        return made;
    }

    /** Live DMA mappings (streaming and coherent) of all devices. */
    public int activeDmaMappings() {
        return dma.activeMappings();
    }

    /** Live DMA mappings of one device. */
    public int activeDmaMappings(Device device) {
        ErrnoException.requireNonNull(device, "device");
        return dma.activeMappings(device);
    }

    /**
     * The DMA traffic every device, present or gone, put on the bus since boot, by where it landed; a device's own
     * is {@link dev.dmaplane.dma.DmaApi#traffic()}.
     */
    public DmaTraffic dmaTraffic() {
        return dma.traffic();
    }

    /**
     * Surprise-removes a PCI function and everything below it ({@code pci_stop_and_remove_bus_device}): drivers
     * are unbound bottom-up, their leaked mappings reclaimed, and the DMA API of each function is gone.
     */
    public void hotUnplug(PciFunction fn) {
        ErrnoException.requireNonNull(fn, "hot-unplug: PCI function");
        if (!fn.isPresent()) {
            throw new ErrnoException(Errno.ENODEV, fn.name() + " is not present");
        }
        List<PciFunction> below = new ArrayList<>();
        for (PciFunction f : pci.functions()) {
            if (f.isPresent() && (f == fn || pci.upstreamPath(f).contains(fn))) {
                below.add(f);
            }
        }
        for (int i = below.size() - 1; i >= 0; i--) {
            devices.removeDevice(below.get(i));
            dma.detach(below.get(i));
        }
    }

    /** Unbinds every driver, removes every device, detaches the device models and releases all memory. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        models.quiesceAll();
        List<Device> all = devices.devices();
        for (int i = all.size() - 1; i >= 0; i--) {
            Device d = all.get(i);
            if (d.isPresent()) {
                devices.removeDevice(d);
            }
            dma.detach(d);
        }
        ErrnoException attachmentFailure = closeAttachments();
        models.close();
        pci.close();
        memory.close();
        if (attachmentFailure != null) {
            throw attachmentFailure;
        }
    }

    /**
     * Closes the closeable attachments, newest first. A failing one is logged and the others still close; the
     * failures come back as one {@code EIO} for {@link #close} to throw once the machine is down.
     */
    private ErrnoException closeAttachments() {
        List<Object> made = new ArrayList<>(attachments.values());
        attachments.clear();
        ErrnoException failure = null;
        for (int i = made.size() - 1; i >= 0; i--) {
            if (made.get(i) instanceof AutoCloseable c) {
                try {
                    c.close();
                } catch (Exception e) {
                    LOG.error("closing the machine's {} failed; the machine closes on", c.getClass().getName(), e);
                    if (failure == null) {
                        failure = new ErrnoException(Errno.EIO, "closing the machine's " + c.getClass().getName()
                                + " failed: " + e.getMessage(), e);
                    } else {
                        failure.addSuppressed(e);
                    }
                }
            }
        }
        return failure;
    }

    public boolean isClosed() {
        return closed;
    }

    /**
     * PCIe routing of a device request below the root complex, for the DMA layer: a memory BAR a switch delivers it
     * to, an Unsupported Request, or the way up to the IOMMU. Register BARs take no device DMA in this model.
     */
    private PeerRouter.Route routeBelowRootComplex(Device requester, long busAddr) {
        if (!(requester instanceof PciFunction fn)
                || !pci.claimedBelowRootComplex(busAddr) && pci.forwardsUpstream(fn)) {
            return PeerRouter.Upstream.INSTANCE;
        }
        return switch (pci.route(fn, busAddr)) {
            case PciRoute.RootComplex rc -> PeerRouter.Upstream.INSTANCE;
            case PciRoute.Unsupported u -> new PeerRouter.Refused(u.reason());
            case PciRoute.Peer p -> {
                BarRegion region = barRegions.get(p.bar());
                yield region != null ? new PeerRouter.ToPeer(region, p.offset())
                        : new PeerRouter.Refused(p.target().name() + " BAR" + p.bar().index()
                        + " is a register block; this model delivers device DMA only to device memory");
            }
        };
    }

    /** A memory BAR as the root complex decodes it, so peers can DMA to it. */
    private record BarRegion(String name, PciFunction fn, Bar bar, Bar.Memory mem) implements PhysicalRegion {
        @Override
        public boolean decodes() {
            return bar.decoding();
        }

        @Override
        public long base() {
            return bar.address();
        }

        @Override
        public long size() {
            return bar.size();
        }

        @Override
        public void read(long offset, MemorySegment dst) {
            mem.read(offset, dst);
        }

        @Override
        public void write(long offset, MemorySegment src) {
            mem.write(offset, src);
        }

        @Override
        public MemorySegment atomicView(long offset, long length) {
            return mem.segment(offset, length);
        }
    }
}
