package dev.dmaplane.device;

import org.osgi.annotation.versioning.ConsumerType;

/**
 * A driver that manages its devices' DMA itself ({@code driver_managed_dma} of {@code struct pci_driver}, set by
 * vfio-pci): binding it takes no use of the group's default domain ({@code iommu_device_use_default_domain}), so a
 * user-space owner may claim the IOMMU group while devices of the group are bound to it.
 */
@ConsumerType
public interface DriverManagedDma extends Driver {
}
