package dev.dmaplane.vfio.impl.iommufd;

import dev.dmaplane.iommu.Iommu;
import dev.dmaplane.iommu.IommuDomain;
import dev.dmaplane.iommu.IommuDomainType;

/**
 * A paging hardware page table ({@code struct iommufd_hwpt_paging} of {@code hw_pagetable.c}): an UNMANAGED IOMMU
 * domain that holds every mapping of its IOAS ({@code iopt_table_add_domain}), the IOVAs past its 48-bit aperture
 * reserved in the IOAS. Made by {@code IOMMU_HWPT_ALLOC} or, as an auto domain, by attaching a device to an IOAS;
 * an auto domain goes with its last device. Holds a reference on its IOAS. Guarded by the context's lock.
 */
final class Hwpt extends IommufdObject {
    final Ioas ioas;
    final IommuDomain domain;
    /** Made by an attach to an IOAS ({@code auto_domain}), destroyed when its last device detaches. */
    final boolean auto;
    /** Allocated with {@code IOMMU_HWPT_ALLOC_DIRTY_TRACKING}: the domain has {@code dirty_ops}. */
    final boolean dirtyTracking;
    /** Devices attached now. */
    int devices;

    private Hwpt(int id, Ioas ioas, IommuDomain domain, boolean auto, boolean dirtyTracking) {
        super(id, Type.HWPT_PAGING);
        this.ioas = ioas;
        this.domain = domain;
        this.auto = auto;
        this.dirtyTracking = dirtyTracking;
    }

    /**
     * {@code iommufd_hwpt_paging_alloc}: a new domain, the aperture's end reserved in {@code ioas} and every mapping
     * of it mapped into the domain; on a failure nothing stays.
     */
    static Hwpt alloc(int id, Ioas ioas, Iommu iommu, boolean auto, boolean dirtyTracking) {
        IommuDomain d = iommu.allocDomain(IommuDomainType.UNMANAGED);
        Hwpt h = new Hwpt(id, ioas, d, auto, dirtyTracking);
        try {
            ioas.reserve(IommuDomain.APERTURE_END, Ioas.ULONG_MAX, h);
            ioas.store.attach(d);
        } catch (RuntimeException e) {
            ioas.unreserve(h);
            iommu.freeDomain(d);
            throw e;
        }
        ioas.hwpts.add(h);
        ioas.users++;
        return h;
    }

    /** {@code iommufd_hwpt_paging_destroy}: the domain leaves the IOAS and is freed. */
    void destroy(Iommu iommu) {
        ioas.store.detach(domain);
        ioas.unreserve(this);
        ioas.hwpts.remove(this);
        ioas.users--;
        iommu.freeDomain(domain);
    }

    @Override
    public String toString() {
        return "hwpt " + id + (auto ? " (auto)" : "") + " " + domain.name();
    }
}
