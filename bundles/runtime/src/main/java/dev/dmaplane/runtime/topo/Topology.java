package dev.dmaplane.runtime.topo;

import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.dmabuf.Attachment;
import dev.dmaplane.dmabuf.DmaBuf;
import dev.dmaplane.dmabuf.DmaBufs;
import dev.dmaplane.dmabuf.heap.P2pExporter;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.Iommu;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.p2pdma.MapType;
import dev.dmaplane.p2pdma.P2pDistance;
import dev.dmaplane.p2pdma.P2pDma;
import dev.dmaplane.pci.Acs;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.pci.PciPortType;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.OptionalInt;

/**
 * A snapshot of one machine for its picture: what {@code lspci -tv}, {@code /sys/kernel/iommu_groups},
 * {@code pci_p2pdma_distance} and {@code /sys/kernel/debug/dma_buf/bufinfo} say, as values.
 *
 * @param title       RAM and IOMMU mode in one line
 * @param hostBridges the host bridges, each the root of a PCI tree
 * @param functions   every PCI function in bus order, absent hardware included
 * @param groups      the IOMMU groups (none with the IOMMU off)
 * @param peerPaths   each pair of bus-mastering endpoints with a driver, as p2pdma judges it
 * @param dmaBufs     the live dma-bufs, oldest first
 */
public record Topology(String title, List<Bridge> hostBridges, List<PciDev> functions, List<Group> groups,
                       List<PeerPath> peerPaths, List<Buffer> dmaBufs) {
    public Topology {
        ErrnoException.requireNonNull(title, "topology: title");
        hostBridges = List.copyOf(ErrnoException.requireNonNull(hostBridges, "topology: host bridges"));
        functions = List.copyOf(ErrnoException.requireNonNull(functions, "topology: functions"));
        groups = List.copyOf(ErrnoException.requireNonNull(groups, "topology: IOMMU groups"));
        peerPaths = List.copyOf(ErrnoException.requireNonNull(peerPaths, "topology: peer-to-peer paths"));
        dmaBufs = List.copyOf(ErrnoException.requireNonNull(dmaBufs, "topology: dma-bufs"));
    }

    /**
     * A host bridge ({@code struct pci_host_bridge}).
     *
     * @param name       {@code pciDDDD:BB}
     * @param p2pAllowed the p2pdma host-bridge whitelist's answer
     */
    public record Bridge(String name, boolean p2pAllowed) {
        public Bridge {
            ErrnoException.requireNonNull(name, "host bridge: name");
        }
    }

    /**
     * A PCI function ({@code struct pci_dev}).
     *
     * @param bdf       {@code DDDD:BB:DD.F}
     * @param parent    the BDF of the bridge above ({@code pci_upstream_bridge}), or the host bridge's name
     * @param kind      the PCIe device/port type as {@code lspci -vv} names it, or {@code PCI}
     * @param bridge    whether it is a bridge (a root port, a switch port) with a bus below
     * @param vendor    vendor ID
     * @param device    device ID
     * @param classCode class code
     * @param model     the device model serving it
     * @param driver    the bound driver
     * @param acs       the ACS Control bits enabled, empty when the function has no ACS capability
     * @param busMaster whether Bus Master Enable is set (the driver called {@code pci_set_master})
     * @param absence   why its hardware does not answer, if it does not
     * @param group     its IOMMU group's id
     */
    public record PciDev(String bdf, String parent, String kind, boolean bridge, int vendor, int device, int classCode,
                           Optional<String> model, Optional<String> driver, Optional<List<String>> acs,
                           boolean busMaster, Optional<String> absence, OptionalInt group) {
        public PciDev {
            acs = acs.map(List::copyOf);
        }
    }

    /**
     * An IOMMU group ({@code struct iommu_group}).
     *
     * @param id         the group number
     * @param domain     the domain it is attached to now
     * @param domainType that domain's type, lower case ({@code dma}, {@code identity}, ...)
     * @param members    the BDFs of its PCI functions
     */
    public record Group(int id, String domain, String domainType, List<String> members) {
        public Group {
            ErrnoException.requireNonNull(domain, "IOMMU group: domain");
            ErrnoException.requireNonNull(domainType, "IOMMU group: domain type");
            members = List.copyOf(ErrnoException.requireNonNull(members, "IOMMU group: members"));
        }
    }

    /**
     * One provider–client pair as {@code calc_map_type_and_dist} judges it.
     *
     * @param provider the function whose memory would be used (the lower BDF of the pair)
     * @param client   the other function
     * @param mapType  how the client reaches the provider
     * @param distance hops through bridges, -1 when not supported
     */
    public record PeerPath(String provider, String client, MapType mapType, int distance) {
        public PeerPath {
            ErrnoException.requireNonNull(provider, "peer-to-peer path: provider");
            ErrnoException.requireNonNull(client, "peer-to-peer path: client");
            ErrnoException.requireNonNull(mapType, "peer-to-peer path: map type");
        }
    }

    /**
     * A dma-buf ({@code struct dma_buf}).
     *
     * @param ino            its inode number
     * @param size           bytes
     * @param exporterName   {@code exp_name}
     * @param exporterDevice the BDF of the exporting function, when the exporter is a device's memory
     * @param dynamic        whether the exporter handles moves
     * @param importers      the attached devices, oldest first
     */
    public record Buffer(long ino, long size, String exporterName, Optional<String> exporterDevice, boolean dynamic,
                         List<Import> importers) {
        public Buffer {
            ErrnoException.requireNonNull(exporterName, "dma-buf: exporter name");
            ErrnoException.requireNonNull(exporterDevice, "dma-buf: exporter device");
            importers = List.copyOf(ErrnoException.requireNonNull(importers, "dma-buf: importers"));
        }
    }

    /**
     * An attachment ({@code struct dma_buf_attachment}).
     *
     * @param device    the importing device's name
     * @param function  the BDF of the PCI function it is or hangs below ({@code find_parent_pci_dev})
     * @param dynamic   whether the importer handles moves
     * @param peer2peer whether peer-to-peer addresses may be given to it
     */
    public record Import(String device, Optional<String> function, boolean dynamic, boolean peer2peer) {
        public Import {
            ErrnoException.requireNonNull(device, "import: device");
            ErrnoException.requireNonNull(function, "import: function");
        }
    }

    /**
     * The snapshot of {@code machine} now. Judging the peer-to-peer paths traces nothing: the picture only looks.
     *
     * @throws ErrnoException {@code EINVAL} for a null machine, {@code ENODEV} for a closed one
     */
    public static Topology of(Machine machine) {
        ErrnoException.requireNonNull(machine, "machine");
        Iommu iommu = machine.iommu();
        List<Bridge> bridges = machine.pci().hostBridges().stream().map(h -> new Bridge(h.name(), h.p2pAllowed())).toList();
        List<PciDev> functions = machine.pci().functions().stream().map(f -> function(iommu, f)).toList();
        List<Group> groups = iommu.enabled() ? iommu.groups().stream().map(Topology::group).toList() : List.of();
        return new Topology(title(machine), bridges, functions, groups, peerPaths(machine), buffers(machine));
    }

    private static String title(Machine machine) {
        Iommu iommu = machine.iommu();
        long ram = machine.memory().size();
        String size = ram % (1L << 30) == 0 ? (ram >> 30) + " GiB" : (ram >> 20) + " MiB";
        return "dmaplane machine: " + size + " RAM, IOMMU "
                + (iommu.enabled() ? "on, default domain " + iommu.defaultDomainType().name().toLowerCase(Locale.ROOT)
                : "off");
    }

    private static PciDev function(Iommu iommu, PciFunction f) {
        String parent = f.upstreamBridge().map(PciFunction::name).orElse(f.pciBus().hostBridge().name());
        String kind = f.portType().map(PciPortType::label).orElse("PCI");
        Optional<List<String>> acs = f.acsCapability().map(cap -> f.acs().map(Acs::names).orElse(List.of()));
        OptionalInt group = iommu.groupOf(f).map(g -> OptionalInt.of(g.id())).orElse(OptionalInt.empty());
        return new PciDev(f.name(), parent, kind, f.isBridge(), f.vendorId(), f.deviceId(), f.classCode(), f.model(),
                f.driver().map(Driver::name), acs, f.busMasterEnabled(), f.absence(), group);
    }

    private static Group group(IommuGroup g) {
        List<String> members = g.devices().stream().filter(d -> d instanceof PciFunction).map(Device::name).toList();
        return new Group(g.id(), g.domain().name(), g.domain().type().name().toLowerCase(Locale.ROOT), members);
    }

    /** Every pair of present endpoints that a driver made bus masters, the lower BDF as provider. */
    private static List<PeerPath> peerPaths(Machine machine) {
        List<PciFunction> dma = machine.pci().functions().stream().filter(f -> !f.isBridge() && f.absence().isEmpty()
                && f.driver().isPresent() && f.busMasterEnabled()).toList();
        if (dma.size() < 2) {
            return List.of();
        }
        P2pDma p2p = P2pDma.of(machine);
        List<PeerPath> paths = new ArrayList<>();
        for (int i = 0; i < dma.size(); i++) {
            for (int j = i + 1; j < dma.size(); j++) {
                P2pDistance d = p2p.distance(dma.get(i), List.of(dma.get(j)), false);
                paths.add(new PeerPath(dma.get(i).name(), dma.get(j).name(), d.mapType(), d.distance()));
            }
        }
        return paths;
    }

    private static List<Buffer> buffers(Machine machine) {
        return DmaBufs.of(machine).list().stream().filter(b -> b.refCount() > 0)
                .sorted(Comparator.comparingLong(DmaBuf::ino)).map(Topology::buffer).toList();
    }

    private static Buffer buffer(DmaBuf b) {
        List<Import> imports = b.attachments().stream().filter(a -> !a.isDetached()).map(Topology::attachment).toList();
        return new Buffer(b.ino(), b.size(), b.exporterName(), P2pExporter.exportingFunction(b).map(Device::name),
                b.isDynamic(), imports);
    }

    private static Import attachment(Attachment a) {
        Optional<String> fn = Optional.empty();
        for (Optional<Device> d = Optional.of(a.device()); d.isPresent() && fn.isEmpty(); d = d.get().parent()) {
            if (d.get() instanceof PciFunction f) {
                fn = Optional.of(f.name());
            }
        }
        return new Import(a.device().name(), fn, a.isDynamic(), a.peer2peer());
    }
}
