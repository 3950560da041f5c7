package dev.dmaplane.hw;

import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.Msix;
import dev.dmaplane.pci.MmioHandler;
import dev.dmaplane.pci.PciFunction;
import org.osgi.annotation.versioning.ProviderType;

import java.util.Map;

/**
 * What the machine gives a model realizing one function, after libvfio-user's device context: the function, its
 * settings from the machine file, its BARs ({@code vfu_setup_region}), DMA ({@code vfu_setup_device_dma}) and
 * interrupts ({@code vfu_irq_trigger}). Everything registered here is undone when the device leaves.
 */
@ProviderType
public interface ModelContext {
    /** The function this device sits in. */
    PciFunction function();

    /** The model's settings from the machine file ({@code properties:}). */
    Map<String, String> properties();

    /**
     * Serves register BAR {@code bar} with {@code registers} (a {@link RegisterBlock} or any handler).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} if the function has no register BAR {@code bar} or a
     *                                           register block is larger than it; {@code EEXIST} if this device
     *                                           already registered that BAR
     */
    void registers(int bar, MmioHandler registers);

    /**
     * Claims device-memory BAR {@code bar} (VRAM, a controller memory buffer) for this device.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} if the function has no device-memory BAR {@code bar};
     *                                           {@code EEXIST} if this device already claimed it
     */
    Bar.Memory deviceMemory(int bar);

    /**
     * Declares how many address bits the device drives in the memory requests it masters, its hardware DMA address
     * width (the {@code DMA_BIT_MASK(n)} its kernel driver passes to {@code dma_set_mask_and_coherent}, as
     * {@code Documentation/core-api/dma-api-howto.rst} tells drivers to): the bus master refuses, with a traced fault,
     * any request of the device beyond it. A model that declares nothing drives 64 bits, as PCIe functions do; one
     * whose instances differ reads the width from its {@link #properties()}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for {@code bits} outside 32..64
     */
    void dmaAddressBits(int bits);

    /** The device's DMA engine side: reads and writes through the function's IOMMU domain, faults as statuses. */
    ModelDma dma();

    /**
     * Signals interrupt {@code vector} in the mode the driver enabled ({@link PciFunction#signal}): an MSI-X or MSI
     * message (left pending while masked, dropped while bus mastering is off), or a pulse of INTx for vector 0.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a vector the enabled mode does not have
     */
    Msix.Outcome raise(int vector);
}
