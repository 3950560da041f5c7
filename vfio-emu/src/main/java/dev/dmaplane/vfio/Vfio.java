package dev.dmaplane.vfio;

import dev.dmaplane.device.Driver;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.mm.AddressSpace;
import dev.dmaplane.vfio.impl.VfioCore;
import org.osgi.annotation.versioning.ProviderType;

import java.time.Duration;

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
        ErrnoException.requireNonNull(machine, "Vfio.of: machine");
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

    /** How long a device's removal waits for its user after the REQ interrupt, by default. */
    Duration DEFAULT_REQUEST_TIMEOUT = Duration.ofMillis(500);

    /**
     * How long unbinding or unplugging a device whose files are open waits, after signalling the user's REQ eventfd,
     * for the files to close before revoking them (the kernel waits without end; a bounded wait never hangs).
     */
    Duration requestTimeout();

    /** Sets {@link #requestTimeout()}; {@code EINVAL} for a negative one. */
    void setRequestTimeout(Duration timeout);

    /** Pages that VFIO containers of this machine hold pinned now. */
    long pinnedPages();
}
