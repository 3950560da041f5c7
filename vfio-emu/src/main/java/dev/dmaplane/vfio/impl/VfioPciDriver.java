package dev.dmaplane.vfio.impl;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.DriverManagedDma;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.vfio.Vfio;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

/**
 * {@code vfio_pci_driver} ({@code drivers/vfio/pci/vfio_pci.c}): binds only where a device's {@code driver_override}
 * names it, manages DMA itself ({@code driver_managed_dma}), and hands each bound function to the machine's VFIO
 * core, which offers it to users through its IOMMU group's {@code /dev/vfio/N}. Stateless: every instance (the DS
 * component, {@link Vfio}'s own) drives the same core.
 */
@Component(service = Driver.class, immediate = true)
public final class VfioPciDriver implements DriverManagedDma {
    /** The driver's name, what {@code driver_override} must say. */
    public static final String NAME = "vfio-pci";
    /**
     * vfio-pci's ID table is empty ({@code vfio_pci_table} holds only what {@code ids=} adds); the driver core wants
     * one row, so this one names vendor 0xffff, which no function has (it is what an empty slot reads).
     */
    private static final MatchTable NO_IDS = MatchTable.of(MatchEntry.Pci.of(0xffff, 0xffff));

    private final VfioCore core;

    @Activate
    public VfioPciDriver(@Reference Machine machine) {
        this((VfioCore) Vfio.of(machine));
    }

    VfioPciDriver(VfioCore core) {
        this.core = core;
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public MatchTable matchTable() {
        return NO_IDS;
    }

    /**
     * {@code vfio_pci_probe}: a PCI function with an IOMMU group becomes a VFIO device of that group.
     *
     * @throws ErrnoException {@code ENODEV} for a device that is not a PCI function, {@code EINVAL} for a function
     *                        without an IOMMU group ({@code vfio_group_find_or_alloc} without no-IOMMU mode)
     */
    @Override
    public BoundDevice probe(Device device, MatchEntry match) {
        if (!(device instanceof PciFunction fn)) {
            throw new ErrnoException(Errno.ENODEV, device.name() + " is not a PCI function");
        }
        if (fn.isBridge()) {
            // vfio_pci_core_register_device refuses bridges (pdev->hdr_type != PCI_HEADER_TYPE_NORMAL)
            throw new ErrnoException(Errno.EINVAL, fn.name() + " is a bridge: vfio-pci drives type 0 functions only");
        }
        VfioPciDevice vdev = core.register(fn);
        return () -> vdev.unregister();
    }

    @Override
    public String toString() {
        return NAME;
    }

}
