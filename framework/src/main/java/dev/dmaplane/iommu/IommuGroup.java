package dev.dmaplane.iommu;

import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.DriverManagedDma;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;

import java.util.List;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * An IOMMU group ({@code struct iommu_group}): the smallest set of devices the IOMMU can isolate from each other.
 * Devices of a group share one domain at a time. A user-space driver (VFIO) must own the whole group, which it
 * cannot while any device of the group is bound to a kernel driver that uses the default domain.
 */
public final class IommuGroup {
    private final int id;
    private final List<Device> devices;
    private final IommuDomain defaultDomain;
    private final Iommu iommu;
    private volatile IommuDomain domain;
    /** Translations hold it shared; a switch of domain exclusively, so that it waits for those in flight. */
    private final ReentrantReadWriteLock translations = new ReentrantReadWriteLock();
    private Object owner;

    IommuGroup(int id, List<? extends Device> devices, IommuDomain defaultDomain, Iommu iommu) {
        this.id = id;
        this.devices = List.copyOf(devices);
        this.defaultDomain = defaultDomain;
        this.iommu = iommu;
        this.domain = defaultDomain;
        defaultDomain.addGroup(this);
    }

    /** The group number, as {@code /sys/kernel/iommu_groups/N}. */
    public int id() {
        return id;
    }

    public List<Device> devices() {
        return devices;
    }

    /** The domain the DMA API uses for these devices ({@code group->default_domain}). */
    public IommuDomain defaultDomain() {
        return defaultDomain;
    }

    /** The domain attached now. */
    public IommuDomain domain() {
        return domain;
    }

    /**
     * The domain attached now, held for one translation until {@link #translated}: a switch of domain waits for the
     * translations in flight through the old one, as a driver's {@code attach_dev} returns only after its
     * invalidation sync, so that no DMA walks a domain its owner is about to unmap and free.
     */
    public IommuDomain translating() {
        translations.readLock().lock();
        return domain;
    }

    /** The translation begun by {@link #translating} is done. */
    public void translated() {
        translations.readLock().unlock();
    }

    /** The current DMA owner claimed by {@link #claimDmaOwner}, or null. */
    public synchronized Object owner() {
        return owner;
    }

    /**
     * Claims the group for user-space DMA ({@code iommu_group_claim_dma_owner}): the group moves to a blocking
     * domain until its owner attaches one. Devices bound to a {@link DriverManagedDma} driver (vfio-pci) do not
     * stand in the way; any other bound driver uses the default domain and does.
     *
     * @throws ErrnoException {@code EPERM} if another owner holds it or a device in it is bound to a driver that
     *                        uses the default domain (the kernel's {@code group->owner_cnt} check)
     */
    public synchronized void claimDmaOwner(Object newOwner) {
        ErrnoException.requireNonNull(newOwner, "owner");
        if (owner != null) {
            throw new ErrnoException(Errno.EPERM, "IOMMU group " + id + " is already owned by " + owner);
        }
        for (Device d : devices) {
            Driver bound = d.driver().orElse(null);
            if (bound != null && !(bound instanceof DriverManagedDma)) {
                throw new ErrnoException(Errno.EPERM, "IOMMU group " + id + ": " + d.name()
                        + " is bound to driver " + bound.name() + ", which uses the default domain");
            }
        }
        owner = newOwner;
        switchTo(iommu.blockingDomain());
    }

    /**
     * Whether a user-space owner could claim the group now ({@code !iommu_group_dma_owner_claimed}, what VFIO reports
     * as {@code VFIO_GROUP_FLAGS_VIABLE}): no owner yet and every device unbound or bound to a
     * {@link DriverManagedDma} driver.
     */
    public synchronized boolean dmaOwnerClaimable() {
        if (owner != null) {
            return false;
        }
        for (Device d : devices) {
            Driver bound = d.driver().orElse(null);
            if (bound != null && !(bound instanceof DriverManagedDma)) {
                return false;
            }
        }
        return true;
    }

    /** Ends user-space ownership ({@code iommu_group_release_dma_owner}): back to the default domain. */
    public synchronized void releaseDmaOwner(Object currentOwner) {
        if (owner == null || owner != currentOwner) {
            throw new ErrnoException(Errno.EPERM, "IOMMU group " + id + " is not owned by " + currentOwner);
        }
        owner = null;
        switchTo(defaultDomain);
    }

    /**
     * Attaches an owner's domain ({@code iommu_attach_group}).
     *
     * @throws ErrnoException {@code EPERM} unless {@code currentOwner} owns the group, {@code EINVAL} for a DMA
     *                        domain (those belong to the DMA API), {@code ENODEV} for a freed domain
     */
    public synchronized void attach(Object currentOwner, IommuDomain newDomain) {
        if (owner == null || owner != currentOwner) {
            throw new ErrnoException(Errno.EPERM, "IOMMU group " + id + " is not owned by " + currentOwner);
        }
        if (newDomain.type() == IommuDomainType.DMA) {
            throw new ErrnoException(Errno.EINVAL, "cannot attach DMA-API domain " + newDomain.name() + " to owned group " + id);
        }
        if (newDomain.isFreed()) {
            throw new ErrnoException(Errno.ENODEV, "domain " + newDomain.name() + " was freed");
        }
        switchTo(newDomain);
    }

    /** Detaches an owner's domain: the group blocks DMA again ({@code iommu_detach_group}). */
    public synchronized void detach(Object currentOwner) {
        if (owner == null || owner != currentOwner) {
            throw new ErrnoException(Errno.EPERM, "IOMMU group " + id + " is not owned by " + currentOwner);
        }
        switchTo(iommu.blockingDomain());
    }

    private void switchTo(IommuDomain d) {
        translations.writeLock().lock();
        try {
            domain.removeGroup(this);
            d.addGroup(this);
            domain = d;
        } finally {
            translations.writeLock().unlock();
        }
    }

    @Override
    public String toString() {
        return "group " + id + " " + devices.stream().map(Device::name).toList() + " -> " + domain.name();
    }
}
