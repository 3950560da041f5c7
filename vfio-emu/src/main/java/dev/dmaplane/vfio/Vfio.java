package dev.dmaplane.vfio;

import dev.dmaplane.device.Driver;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.vfio.impl.VfioCore;
import org.osgi.annotation.versioning.ProviderType;

/**
 * VFIO on one machine ({@code drivers/vfio/vfio_main.c} with vfio-pci and the type 1 IOMMU driver): the vfio-pci
 * driver to bind devices to by {@code driver_override}, and the users ({@link VfioUser}) that open
 * {@code /dev/vfio/vfio} and {@code /dev/vfio/N}.
 */
@ProviderType
public interface Vfio {
    /** {@code dma_entry_limit}'s default: mappings per container. */
    int DEFAULT_DMA_ENTRY_LIMIT = 65535;

    /** The machine's one VFIO core, made on first use and closed with the machine. */
    static Vfio of(Machine machine) {
        return machine.attachment(Vfio.class, VfioCore::new);
    }

    /** The vfio-pci driver ({@code vfio_pci_driver}): binds only to devices whose {@code driver_override} names it. */
    Driver driver();

    /**
     * A user-space process with address space {@code mm} and {@code RLIMIT_MEMLOCK} of {@code memlockLimit} bytes,
     * which opens VFIO files.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a null or closed address space or a negative limit
     */
    VfioUser open(AddressSpace mm, long memlockLimit);

    /** The type 1 driver's {@code dma_entry_limit} module parameter: DMA mappings one container may hold. */
    int dmaEntryLimit();

    /**
     * Sets {@code dma_entry_limit} for containers whose IOMMU is set from now on (as the module parameter is read
     * at {@code vfio_iommu_type1_open}).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} below 0
     */
    void setDmaEntryLimit(int limit);

    /** Pages that VFIO containers of this machine hold pinned now. */
    long pinnedPages();
}
