package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;

import static dev.dmaplane.pci.PciRegs.ERR_UNC_UNSUP;

/**
 * A machine's PCI hierarchy as the kernel holds it after enumeration: host bridges, buses, functions, and the
 * IOMMU isolation groups they fall into. Built by {@link TopologyLoader}; owns the arena that backs BAR device
 * memory, released by {@link #close()}.
 * <p>
 * Groups are computed once, when the topology is built, as the kernel forms {@code iommu_group}s once at device
 * discovery: later writes to ACS Control registers do not regroup.
 */
public final class PciTopology implements AutoCloseable {
    /** The most bytes one memory request TLP carries or asks for: it never crosses a 4 KiB boundary (2.2.7). */
    public static final int MAX_TLP_BYTES = 4096;
    private final MachineSpec machine;
    private final List<HostBridge> hostBridges;
    private final List<PciFunction> functions;
    private final Map<Bdf, PciFunction> byBdf = new LinkedHashMap<>();
    private final DeviceMemoryPool pool;
    private final List<List<PciFunction>> groups;
    private final Map<PciFunction, Integer> groupIds = new IdentityHashMap<>();

    /** Config writes to this topology's functions (address decoding may have changed with each). */
    private final AtomicInteger configWrites;

    PciTopology(MachineSpec machine, List<HostBridge> hostBridges, DeviceMemoryPool pool,
                AtomicInteger configWrites) {
        this.configWrites = configWrites;
        this.machine = Objects.requireNonNull(machine, "machine");
        this.hostBridges = List.copyOf(hostBridges);
        this.pool = pool;
        List<PciFunction> order = new ArrayList<>();
        for (HostBridge hb : this.hostBridges) {
            addDevices(hb.rootBus(), order);
        }
        this.functions = List.copyOf(order);
        for (PciFunction f : functions) {
            byBdf.put(f.bdf(), f);
        }
        this.groups = IommuGrouping.compute(functions);
        for (int i = 0; i < groups.size(); i++) {
            for (PciFunction f : groups.get(i)) {
                groupIds.put(f, i);
            }
        }
    }

    /** The order {@code pci_bus_add_devices} adds devices: a bus's functions, then each bridge's bus below. */
    private static void addDevices(PciBus bus, List<PciFunction> out) {
        List<PciFunction> devs = bus.devices();
        out.addAll(devs);
        for (PciFunction f : devs) {
            f.subordinate().ifPresent(b -> addDevices(b, out));
        }
    }

    /**
     * The hardware of {@code fn} leaves its slot (the presence detect of a hot-plug slot going low): from now on it
     * reads all-ones and decodes nothing. This is the hardware side only; the machine takes the device off the
     * driver core first ({@code Machine}).
     *
     * @throws ErrnoException {@code EINVAL} for a bridge, {@code ENODEV} for a function of another topology
     */
    public void removeHardware(PciFunction fn, String why) {
        requireOwn(fn);
        ErrnoException.requireNonNull(why, "reason for removing " + fn.bdf());
        if (fn.isBridge()) {
            throw new ErrnoException(Errno.EINVAL, fn.bdf() + " is a bridge; only endpoints come and go with their models");
        }
        fn.powerOff(why);
    }

    /**
     * New hardware arrives in the slot of {@code fn}, configured as firmware leaves it ({@link PciFunction#absence()}
     * becomes empty).
     *
     * @throws ErrnoException {@code ENODEV} for a function of another topology
     */
    public void insertHardware(PciFunction fn) {
        requireOwn(fn);
        fn.powerOn();
    }

    /**
     * The hardware in the slot of {@code fn} drives {@code bits} address bits in the requests it masters (its device
     * model's declaration): the bus master refuses a request beyond them. The hardware side only; the kernel's DMA
     * mask is the driver's ({@link dev.dmaplane.dma.DmaApi#setDmaMask}).
     *
     * @throws ErrnoException {@code EINVAL} for {@code bits} outside 32..64, {@code ENODEV} for a function of another
     *                        topology
     */
    public void setDmaAddressBits(PciFunction fn, int bits) {
        requireOwn(fn);
        if (bits < 32 || bits > 64) {
            throw new ErrnoException(Errno.EINVAL, fn.bdf() + ": DMA address width of " + bits + " bits is outside 32..64");
        }
        fn.setDmaAddressBits(bits);
    }

    /** The machine description this topology was built from (memory size, IOMMU settings, hierarchy). */
    public MachineSpec machine() {
        return machine;
    }

    public List<HostBridge> hostBridges() {
        return hostBridges;
    }

    /** Every function, in the order the kernel adds them to the driver core. */
    public List<PciFunction> functions() {
        return functions;
    }

    /** The function at {@code bdf}, if present. */
    public Optional<PciFunction> find(Bdf bdf) {
        return Optional.ofNullable(byBdf.get(ErrnoException.requireNonNull(bdf, "bdf")));
    }

    /**
     * The function at {@code bdf}.
     *
     * @throws ErrnoException {@code ENODEV} naming the BDF if no function is there
     */
    public PciFunction function(Bdf bdf) {
        PciFunction f = byBdf.get(ErrnoException.requireNonNull(bdf, "bdf"));
        if (f == null) {
            throw new ErrnoException(Errno.ENODEV, "no PCI function at " + bdf);
        }
        return f;
    }

    /** {@link #function(Bdf)} of a parsed BDF. */
    public PciFunction function(String bdf) {
        return function(Bdf.parse(bdf));
    }

    /**
     * The bridges above {@code fn}, nearest first, ending with the root port (or other function) on the root bus;
     * empty for a function on a root bus.
     */
    public List<PciFunction> upstreamPath(PciFunction fn) {
        requireOwn(fn);
        List<PciFunction> path = new ArrayList<>();
        for (Optional<PciFunction> up = fn.upstreamBridge(); up.isPresent(); up = up.get().upstreamBridge()) {
            path.add(up.get());
        }
        return List.copyOf(path);
    }

    /**
     * Whether every function from {@code start} up to the root bus enforces {@code flags}
     * ({@code pci_acs_path_enabled(start, NULL, flags)}).
     */
    public boolean acsPathEnabled(PciFunction start, Acs flags) {
        requireOwn(start);
        ErrnoException.requireNonNull(flags, "ACS flags");
        return IommuGrouping.acsPathEnabled(start, null, flags);
    }

    /**
     * Whether every function from {@code start} up to and including {@code end} enforces {@code flags}; false
     * if {@code end} is not above {@code start} ({@code pci_acs_path_enabled(start, end, flags)}).
     */
    public boolean acsPathEnabled(PciFunction start, PciFunction end, Acs flags) {
        requireOwn(start);
        requireOwn(end);
        ErrnoException.requireNonNull(flags, "ACS flags");
        return IommuGrouping.acsPathEnabled(start, end, flags);
    }

    /**
     * Where the fabric takes a memory request {@code requester} issues at bus address {@code busAddr}: to a peer's
     * BAR when a switch below the root complex routes it there, else up to the root complex (and its IOMMU), or
     * nowhere (an Unsupported Request). See {@link PciRouting} for the rules.
     */
    public PciRoute route(PciFunction requester, long busAddr) {
        requireOwn(requester);
        return PciRouting.route(requester, busAddr);
    }

    /**
     * The fabric completed a memory request of {@code size} bytes that {@code requester} issued at {@code busAddr} as
     * an Unsupported Request, as {@link #route} gives it or because the root complex decodes nothing where it went
     * (PCIe Base Spec 6.2.3.1 and the flowchart of 6.2.5). The completer logs it: the function whose BAR holds the
     * address while its Memory Space Enable is clear, the bridge that could not route it, or the root port through
     * which it entered the root complex, with the request's header and the requester's ID in its AER log. A
     * non-posted request (a read or an AtomicOp) gets an Unsupported Request completion, which sets Received Master
     * Abort in the requester's Status (7.5.1.1.4). A request the fabric routed to a BAR is that function's to
     * complete: nothing is logged for it here.
     *
     * @param posted whether the request is a memory write, which gets no completion
     * @throws ErrnoException {@code EINVAL} for a size outside 1..4096 (a TLP never crosses 4 KiB), {@code ENODEV}
     *                        for a function of another topology
     */
    public void unsupportedRequest(PciFunction requester, long busAddr, int size, boolean posted) {
        requireOwn(requester);
        PciFunction completer = switch (PciRouting.route(requester, busAddr)) {
            case PciRoute.Unsupported u -> u.at();
            case PciRoute.RootComplex rc -> rc.entry() == requester ? null : rc.entry();
            case PciRoute.Peer p -> null;
        };
        logUnsupported(requester, completer, busAddr, size, posted);
    }

    /**
     * As {@link #unsupportedRequest(PciFunction, long, int, boolean)} for a request the root complex sent to a BAR of
     * {@code completer} (through the IOMMU and the host bridge, as {@code dma_map_resource} maps it) while the function
     * does not decode memory: {@code completer} logs it (PCIe Base Spec 7.5.1.1.3).
     *
     * @throws ErrnoException {@code EINVAL} for a size outside 1..4096, {@code ENODEV} for a function of another
     *                        topology
     */
    public void unsupportedRequest(PciFunction requester, PciFunction completer, long busAddr, int size, boolean posted) {
        requireOwn(requester);
        requireOwn(completer);
        logUnsupported(requester, completer, busAddr, size, posted);
    }

    /** {@code completer} (if any) logs the request, the requester of a non-posted one its Received Master Abort. */
    private static void logUnsupported(PciFunction requester, PciFunction completer, long busAddr, int size, boolean posted) {
        if (size < 1 || size > MAX_TLP_BYTES) {
            throw new ErrnoException(Errno.EINVAL, "request size " + size + " outside 1.." + MAX_TLP_BYTES);
        }
        if (completer != null) {
            PcieErrors.memoryRequestError(completer.configSpace(), requester.bdf().requesterId(), ERR_UNC_UNSUP,
                    busAddr, size, posted);
        }
        if (!posted) {
            PcieErrors.unsupportedCompletion(requester.configSpace());
        }
    }

    /**
     * Whether any BAR or bridge memory window of the topology decodes {@code busAddr}. When none does, every
     * request for it goes up to the root complex ({@link #route} gives {@link PciRoute.RootComplex}), whoever
     * issues it: the fast path of a device's DMA to RAM. The decoders are cached until a config write.
     */
    public boolean claimedBelowRootComplex(long busAddr) {
        Decoders d = decoders;
        if (d == null || d.writes != configWrites.get()) {
            d = Decoders.of(functions, configWrites);
            decoders = d;
        }
        return d.claims(busAddr);
    }

    /**
     * Whether every bridge above {@code fn} forwards requests from below upstream (its Bus Master Enable is set):
     * with {@link #claimedBelowRootComplex}, the fast path that sends a request straight to the root complex.
     */
    public boolean forwardsUpstream(PciFunction fn) {
        requireOwn(fn);
        for (Optional<PciFunction> up = fn.upstreamBridge(); up.isPresent(); up = up.get().upstreamBridge()) {
            if (!up.get().busMasterEnabled()) {
                return false;
            }
        }
        return true;
    }

    /**
     * A value that changes with every config write to this topology, hence whenever its address decoding (and so
     * routing) may have; writes to another topology's functions leave it alone.
     */
    public long decodeEpoch() {
        return configWrites.get();
    }

    private volatile Decoders decoders;

    /** Every BAR and bridge window as inclusive {@code [first, last]} ranges, with the config writes they reflect. */
    private record Decoders(int writes, long[] first, long[] last) {
        static Decoders of(List<PciFunction> fns, AtomicInteger configWrites) {
            int w = configWrites.get(); // before the registers are read
            List<long[]> ranges = new ArrayList<>();
            for (PciFunction f : fns) {
                for (Bar b : f.bars()) {
                    if (b.address() != 0) {
                        ranges.add(new long[]{b.address(), b.address() + b.size() - 1});
                    }
                }
                if (f.isBridge()) {
                    f.configSpace().memoryWindow().ifPresent(x -> ranges.add(new long[]{x.base(), x.limit()}));
                    f.configSpace().prefetchableWindow().ifPresent(x -> ranges.add(new long[]{x.base(), x.limit()}));
                }
            }
            long[] first = new long[ranges.size()];
            long[] last = new long[ranges.size()];
            for (int i = 0; i < first.length; i++) {
                first[i] = ranges.get(i)[0];
                last[i] = ranges.get(i)[1];
            }
            return new Decoders(w, first, last);
        }

        boolean claims(long addr) {
            for (int i = 0; i < first.length; i++) {
                if (Long.compareUnsigned(addr, first[i]) >= 0 && Long.compareUnsigned(addr, last[i]) <= 0) {
                    return true;
                }
            }
            return false;
        }
    }

    /**
     * The IOMMU isolation groups, numbered by position: functions that cannot be isolated from each other
     * for DMA share a group; bridges are members like any function. Groups are in the order their first
     * member was probed, members in probe order.
     */
    public List<List<PciFunction>> isolationGroups() {
        return groups;
    }

    /** The number of {@code fn}'s group in {@link #isolationGroups()}. */
    public int isolationGroupId(PciFunction fn) {
        requireOwn(fn);
        return groupIds.get(fn);
    }

    /** The members of {@code fn}'s isolation group, {@code fn} included. */
    public List<PciFunction> isolationGroup(PciFunction fn) {
        return groups.get(isolationGroupId(fn));
    }

    /**
     * The hierarchy as {@code lspci -tv} draws it; each non-bridge line shows class, {@code [vendor:device]},
     * BDF, the device model and the bound driver, if any.
     */
    public String lspciTree() {
        return Lspci.tree(hostBridges);
    }

    /**
     * {@code lspci} with pciutils' options ({@link LspciOptions}): the functions {@code -s}/{@code -d} select, each as
     * the terse line in {@code -n}/{@code -nn}/{@code -D} form with {@code -k}'s kernel lines, or verbosely, then
     * {@code -x}'s dump; {@code -t} draws the tree. {@code kernelModules} names the drivers whose ID tables match a
     * function ({@code -k}'s "Kernel modules"). A bare BDF that names no function is {@code ENODEV}.
     *
     * @throws ErrnoException {@code ENODEV} for an {@link LspciOptions#exact()} function not in this topology
     */
    public String lspci(LspciOptions options, Function<PciFunction, List<String>> kernelModules) {
        ErrnoException.requireNonNull(options, "lspci options");
        ErrnoException.requireNonNull(kernelModules, "lspci kernel modules");
        if (options.tree()) {
            return lspciTree();
        }
        List<PciFunction> fns = functions;
        if (options.exact().isPresent()) {
            Bdf b = options.exact().get();
            fns = List.of(find(b).orElseThrow(() -> new ErrnoException(Errno.ENODEV,
                    "no PCI function " + b + " on this machine (lspci lists them)")));
        }
        return LspciList.render(this, fns, options, kernelModules);
    }

    /** One function as {@code lspci -vv -s BDF} describes it: IDs, class, command/status, BARs, capabilities, ACS. */
    public String lspciVerbose(PciFunction fn) {
        return Lspci.verbose(fn, isolationGroupId(fn));
    }

    /**
     * Config space of every function that answers, as {@code lspci -x} ({@code bytes} 64), {@code -xxx} (256) or
     * {@code -xxxx} (4096) dumps it: the text {@code lspci -F FILE} reads back.
     *
     * @throws ErrnoException {@code EINVAL} for another number of bytes
     */
    public String lspciHex(int bytes) {
        return LspciHex.dump(functions, bytes);
    }

    /**
     * {@link #lspciHex(int)} of {@code fn} alone ({@code lspci -s BDF -x}); empty while its slot is empty.
     *
     * @throws ErrnoException {@code EINVAL} for another number of bytes, {@code ENODEV} for a function of another
     *                        topology
     */
    public String lspciHex(PciFunction fn, int bytes) {
        requireOwn(fn);
        return LspciHex.dump(List.of(fn), bytes);
    }

    /** Whether {@link #close()} ran. */
    public boolean isClosed() {
        return pool.isClosed();
    }

    /** Releases all BAR device memory; later accesses to it fail with {@code ENODEV}. Idempotent. */
    @Override
    public void close() {
        pool.close();
    }

    private void requireOwn(PciFunction fn) {
        ErrnoException.requireNonNull(fn, "function");
        if (byBdf.get(fn.bdf()) != fn) {
            throw new ErrnoException(Errno.ENODEV, fn.bdf() + " is not a function of this topology");
        }
    }

    @Override
    public String toString() {
        return "PciTopology[" + functions.size() + " functions, " + groups.size() + " IOMMU groups]";
    }
}
