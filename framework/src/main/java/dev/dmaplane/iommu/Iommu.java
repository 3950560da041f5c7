package dev.dmaplane.iommu;

import dev.dmaplane.device.Device;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.trace.TraceKind;
import dev.dmaplane.trace.Tracer;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The machine's IOMMU ({@code struct iommu_device} with the core of {@code drivers/iommu/iommu.c}): its groups,
 * the domains allocated on it, and the faults it recorded. A disabled IOMMU has no groups, and devices DMA with
 * physical addresses.
 */
public final class Iommu {
    /** Faults kept for listing; older ones are dropped (they stay in the trace). */
    public static final int FAULT_LOG_SIZE = 1024;

    private final boolean enabled;
    private final IommuDomainType defaultType;
    private final boolean dirtyTracking;
    private final Tracer tracer;
    private final AtomicInteger nextDomainId = new AtomicInteger();
    /** Guarded by this; copied out by {@link #groups()}: an add per group, not a copy of the list per group. */
    private final List<IommuGroup> groups = new ArrayList<>();
    /** Guarded by this. */
    private final List<IommuDomain> domains = new ArrayList<>();
    private final Map<Device, IommuGroup> byDevice = new ConcurrentHashMap<>();
    private final List<IommuFault> faults = new ArrayList<>();
    private final IommuDomain identity;
    private final IommuDomain blocking;

    /**
     * @param enabled     whether DMA is translated at all ({@code intel_iommu=on})
     * @param defaultType the default domain type of new groups: DMA or IDENTITY ({@code iommu.passthrough})
     */
    public Iommu(boolean enabled, IommuDomainType defaultType, Tracer tracer) {
        this(enabled, defaultType, true, tracer);
    }

    /**
     * @param enabled       whether DMA is translated at all ({@code intel_iommu=on})
     * @param defaultType   the default domain type of new groups: DMA or IDENTITY ({@code iommu.passthrough})
     * @param dirtyTracking whether its page tables have dirty bits ({@code IOMMU_CAP_DIRTY_TRACKING})
     */
    public Iommu(boolean enabled, IommuDomainType defaultType, boolean dirtyTracking, Tracer tracer) {
        this.dirtyTracking = dirtyTracking;
        if (defaultType != IommuDomainType.DMA && defaultType != IommuDomainType.IDENTITY) {
            throw new ErrnoException(Errno.EINVAL, "default domain type must be DMA or IDENTITY, not " + defaultType);
        }
        this.enabled = enabled;
        this.defaultType = defaultType;
        this.tracer = ErrnoException.requireNonNull(tracer, "tracer");
        this.identity = newDomain(IommuDomainType.IDENTITY);
        this.blocking = newDomain(IommuDomainType.BLOCKED);
    }

    public boolean enabled() {
        return enabled;
    }

    public IommuDomainType defaultDomainType() {
        return defaultType;
    }

    /**
     * {@code device_iommu_capable(dev, IOMMU_CAP_DIRTY_TRACKING)}: whether the page tables have dirty bits; without
     * them no domain has {@code dirty_ops} ({@link IommuDomain#setDirtyTracking} is {@code EOPNOTSUPP}).
     */
    public boolean dirtyTracking() {
        return dirtyTracking;
    }

    /**
     * Forms a group of {@code members} (as {@code iommu_group_alloc} + {@code iommu_group_add_device} at probe of
     * the IOMMU); its default domain is a new DMA domain or the shared identity domain.
     */
    public synchronized IommuGroup addGroup(List<? extends Device> members) {
        if (!enabled) {
            throw new ErrnoException(Errno.ENODEV, "the IOMMU is disabled: no groups");
        }
        if (members == null || members.isEmpty()) {
            throw new ErrnoException(Errno.EINVAL, "an IOMMU group needs at least one device");
        }
        for (Device d : members) {
            if (byDevice.containsKey(d)) {
                throw new ErrnoException(Errno.EEXIST, d.name() + " is already in IOMMU group " + byDevice.get(d).id());
            }
        }
        IommuDomain def = defaultType == IommuDomainType.DMA ? newDomain(IommuDomainType.DMA) : identity;
        IommuGroup g = new IommuGroup(groups.size(), members, def, this);
        groups.add(g);
        for (Device d : members) {
            byDevice.put(d, g);
        }
        return g;
    }

    /** The group of {@code device}, or of its nearest ancestor in one (auxiliary devices use their parent's). */
    public Optional<IommuGroup> groupOf(Device device) {
        ErrnoException.requireNonNull(device, "iommu_group_get: device");
        for (Device d = device; d != null; d = d.parent().orElse(null)) {
            IommuGroup g = byDevice.get(d);
            if (g != null) {
                return Optional.of(g);
            }
        }
        return Optional.empty();
    }

    /** Allocates a domain of {@code type} ({@code iommu_paging_domain_alloc}); only paging types are new each time. */
    public IommuDomain allocDomain(IommuDomainType type) {
        ErrnoException.requireNonNull(type, "iommu_domain_alloc: domain type");
        if (!enabled) {
            throw new ErrnoException(Errno.ENODEV, "the IOMMU is disabled: no domains");
        }
        return switch (type) {
            case IDENTITY -> identity;
            case BLOCKED -> blocking;
            case DMA, UNMANAGED -> newDomain(type);
        };
    }

    /** Frees a domain ({@code iommu_domain_free}); {@code EBUSY} while groups are attached to it. */
    public synchronized void freeDomain(IommuDomain d) {
        if (d == identity || d == blocking) {
            throw new ErrnoException(Errno.EINVAL, "domain " + d.name() + " is static and cannot be freed");
        }
        if (!d.groups().isEmpty()) {
            throw new ErrnoException(Errno.EBUSY, "domain " + d.name() + " still has groups attached: "
                    + d.groups().stream().map(IommuGroup::id).toList());
        }
        if (!domains.remove(d)) {
            throw new ErrnoException(Errno.ENOENT, "domain " + d.name() + " is not allocated");
        }
        d.markFreed();
    }

    public synchronized List<IommuGroup> groups() {
        return List.copyOf(groups);
    }

    /** Every live domain, including the static identity and blocking ones. */
    public synchronized List<IommuDomain> domains() {
        return List.copyOf(domains);
    }

    /** The most recent faults, oldest first. */
    public synchronized List<IommuFault> faults() {
        return List.copyOf(faults);
    }

    IommuDomain blockingDomain() {
        return blocking;
    }

    synchronized void recordFault(IommuFault f) {
        if (faults.size() == FAULT_LOG_SIZE) {
            faults.removeFirst();
        }
        faults.add(f);
        tracer.emit(TraceKind.FAULT, f.device(), f.iova(), 0, (f.write() ? "write" : "read") + " domain " + f.domainId() + ": " + f.reason());
    }

    private synchronized IommuDomain newDomain(IommuDomainType type) {
        IommuDomain d = new IommuDomain(nextDomainId.getAndIncrement(), type, this, tracer);
        domains.add(d);
        return d;
    }
}
