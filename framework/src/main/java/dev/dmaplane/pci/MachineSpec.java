package dev.dmaplane.pci;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.mem.HostMemory;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;

/**
 * A machine description as read from a machine file: host memory size, IOMMU settings and the PCI hierarchy.
 * Values only; {@link TopologyLoader#build(MachineSpec)} checks the hierarchy's consistency and turns it into a
 * {@link PciTopology}.
 *
 * @param memoryBytes host memory, a positive multiple of 2 MiB of at most {@link #MAX_MEMORY}
 * @param iommu       whether the IOMMU translates and what default domains groups get
 * @param hostBridges the PCI domains, each with its hierarchy
 */
public record MachineSpec(long memoryBytes, IommuSpec iommu, List<HostBridgeSpec> hostBridges) {
    /** Host memory comes in whole 2 MiB huge pages. */
    public static final long MEMORY_GRANULE = 2L << 20;
    /** The most RAM a machine can have: what the physical address map gives RAM below device memory (1 TiB less the PCI hole). */
    public static final long MAX_MEMORY = HostMemory.MAX_RAM;

    public MachineSpec {
        if (memoryBytes <= 0 || memoryBytes % MEMORY_GRANULE != 0) {
            throw new ErrnoException(Errno.EINVAL, "memory size " + memoryBytes + " bytes must be a positive multiple of 2 MiB");
        }
        if (memoryBytes > MAX_MEMORY) {
            throw new ErrnoException(Errno.EINVAL, "memory size " + memoryBytes + " bytes exceeds the limit of "
                    + MAX_MEMORY + " bytes (1 TiB less the 1 GiB PCI hole)");
        }
        ErrnoException.requireNonNull(iommu, "iommu");
        hostBridges = List.copyOf(ErrnoException.requireNonNull(hostBridges, "hostBridges"));
    }

    /** The default domain type groups get at boot ({@code iommu.passthrough=}, {@code IOMMU_DOMAIN_DMA/IDENTITY}). */
    public enum DefaultDomain {
        /** Translated DMA-API domains: every DMA address is an IOVA the IOMMU maps. */
        DMA,
        /** Identity (passthrough) domains: bus addresses equal physical addresses. */
        IDENTITY
    }

    /**
     * The IOMMU section.
     *
     * @param dirtyTracking whether the IOMMU's page tables have dirty bits ({@code IOMMU_CAP_DIRTY_TRACKING}: VT-d
     *                      second-stage A/D bits, AMD HDSup, SMMUv3 HTTU with DBM)
     */
    public record IommuSpec(boolean enabled, DefaultDomain defaultDomain, boolean dirtyTracking) {
        /** IOMMU on, DMA-API default domains: what the file gets when it has no {@code iommu} section. */
        public static final IommuSpec DEFAULT = new IommuSpec(true, DefaultDomain.DMA, true);

        public IommuSpec {
            ErrnoException.requireNonNull(defaultDomain, "defaultDomain");
        }

        /** An IOMMU with dirty tracking. */
        public IommuSpec(boolean enabled, DefaultDomain defaultDomain) {
            this(enabled, defaultDomain, true);
        }
    }

    /**
     * A host bridge and the functions on its root bus.
     *
     * @param domain     PCI domain (segment), 0..0xFFFF
     * @param rootBus    number of its root bus, usually 0
     * @param name       device name; {@code pciDDDD:BB} if empty
     * @param p2pAllowed the p2pdma host-bridge whitelist answer for this bridge
     * @param children   functions on the root bus
     */
    public record HostBridgeSpec(int domain, int rootBus, Optional<String> name, boolean p2pAllowed,
                                 List<FunctionSpec> children) {
        public HostBridgeSpec {
            if (domain < 0 || domain > 0xFFFF) {
                throw new ErrnoException(Errno.EINVAL, "PCI domain " + domain + " is outside 0..0xffff");
            }
            if (rootBus < 0 || rootBus > 0xFF) {
                throw new ErrnoException(Errno.EINVAL, "root bus " + rootBus + " is outside 0..0xff");
            }
            ErrnoException.requireNonNull(name, "name");
            children = List.copyOf(ErrnoException.requireNonNull(children, "children"));
        }
    }

    /**
     * A PCI Express function's link and the extended capabilities that go with it (PCIe Base Spec 7.5.3.6, 7.8.4,
     * 7.9.3): what a real part shows unless the machine file says otherwise.
     *
     * @param serial    the Device Serial Number; empty to derive one from the vendor, device and BDF
     * @param aer       whether the function has the Advanced Error Reporting capability
     * @param linkSpeed Max Link Speed as a Supported Link Speeds index: 1 (2.5 GT/s) to 4 (16 GT/s)
     * @param linkWidth Maximum Link Width in lanes: 1, 2, 4, 8 or 16
     */
    public record ExpressSpec(OptionalLong serial, boolean aer, int linkSpeed, int linkWidth) {
        /** AER present, a serial derived from the function, a 16 GT/s x16 link. */
        public static final ExpressSpec DEFAULT = new ExpressSpec(OptionalLong.empty(), true, 4, 16);

        public ExpressSpec {
            ErrnoException.requireNonNull(serial, "serial");
        }
    }

    /**
     * One function of the hierarchy.
     *
     * @param bdf          its address; must lie on the bus of its parent
     * @param type         PCI Express device/port type; bridge types may have children
     * @param classCode    24-bit class code
     * @param multifunction the header's multi-function bit (implied for functions other than 0)
     * @param bars         memory BARs
     * @param acs          the ACS capability, if the function has one
     * @param msix         the MSI-X capability, if the function has one
     * @param msi          the MSI capability, if the function has one
     * @param model        name of the device model to bind (e.g. {@code nvme}), if any
     * @param properties   settings for that model
     * @param children     functions on this bridge's secondary bus
     * @param express      the link and the extended capabilities a PCI Express function carries
     */
    public record FunctionSpec(Bdf bdf, PciPortType type, int vendorId, int deviceId, int classCode, int revision,
                               int subsystemVendorId, int subsystemId, boolean multifunction, List<BarSpec> bars,
                               Optional<AcsSpec> acs, Optional<MsixSpec> msix, Optional<MsiSpec> msi,
                               Optional<String> model, Map<String, String> properties, List<FunctionSpec> children,
                               ExpressSpec express) {
        /** A function with the link and extended capabilities of {@link ExpressSpec#DEFAULT}. */
        public FunctionSpec(Bdf bdf, PciPortType type, int vendorId, int deviceId, int classCode, int revision,
                            int subsystemVendorId, int subsystemId, boolean multifunction, List<BarSpec> bars,
                            Optional<AcsSpec> acs, Optional<MsixSpec> msix, Optional<MsiSpec> msi,
                            Optional<String> model, Map<String, String> properties, List<FunctionSpec> children) {
            this(bdf, type, vendorId, deviceId, classCode, revision, subsystemVendorId, subsystemId, multifunction, bars,
                    acs, msix, msi, model, properties, children, ExpressSpec.DEFAULT);
        }

        /** A function without an MSI capability. */
        public FunctionSpec(Bdf bdf, PciPortType type, int vendorId, int deviceId, int classCode, int revision,
                            int subsystemVendorId, int subsystemId, boolean multifunction, List<BarSpec> bars,
                            Optional<AcsSpec> acs, Optional<MsixSpec> msix, Optional<String> model,
                            Map<String, String> properties, List<FunctionSpec> children) {
            this(bdf, type, vendorId, deviceId, classCode, revision, subsystemVendorId, subsystemId, multifunction, bars,
                    acs, msix, Optional.empty(), model, properties, children, ExpressSpec.DEFAULT);
        }

        public FunctionSpec {
            ErrnoException.requireNonNull(bdf, "bdf");
            ErrnoException.requireNonNull(type, "type");
            bars = List.copyOf(ErrnoException.requireNonNull(bars, "bars"));
            ErrnoException.requireNonNull(acs, "acs");
            ErrnoException.requireNonNull(msix, "msix");
            ErrnoException.requireNonNull(msi, "msi");
            ErrnoException.requireNonNull(model, "model");
            properties = Collections.unmodifiableMap(
                    new LinkedHashMap<>(ErrnoException.requireNonNull(properties, "properties")));
            children = List.copyOf(ErrnoException.requireNonNull(children, "children"));
            ErrnoException.requireNonNull(express, "express");
        }
    }

    /** What answers a BAR. */
    public enum BarKind {
        /** A register block served by an {@link MmioHandler}. */
        MMIO,
        /** Device memory (VRAM), lazily backed. */
        MEMORY
    }

    /**
     * A memory BAR.
     *
     * @param index        BAR register index, 0..5 (0..1 on a bridge)
     * @param size         bytes, a power of two of at least 4 KiB
     * @param is64Bit      a 64-bit BAR, using registers {@code index} and {@code index + 1}
     * @param prefetchable the prefetchable flag; 64-bit prefetchable BARs are placed above 4 GiB
     */
    public record BarSpec(int index, long size, BarKind kind, boolean is64Bit, boolean prefetchable) {
        public BarSpec {
            ErrnoException.requireNonNull(kind, "kind");
        }
    }

    /** The ACS extended capability: what the port implements and what is enabled at boot. */
    public record AcsSpec(Acs capability, Acs control) {
        public AcsSpec {
            ErrnoException.requireNonNull(capability, "capability");
            ErrnoException.requireNonNull(control, "control");
        }
    }

    /** The MSI-X capability: vector count, and where in which BAR the table and PBA live. */
    public record MsixSpec(int vectors, int bar, long tableOffset, long pbaOffset) {
    }

    /** The MSI capability (PCI Local Bus Spec 6.8.1): vectors capable, 64-bit address, per-vector masking. */
    public record MsiSpec(int vectors, boolean is64Bit, boolean perVectorMask) {
    }
}
