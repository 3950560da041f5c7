package dev.dmaplane.device;

/**
 * A faux device ({@code faux_device_create}, drivers/base/faux.c): a named device a subsystem makes for itself, with
 * no bus, no hardware, no DMA API and no driver to match; iommufd's global device, which it attaches to dma-bufs it
 * maps into its own IO page tables ({@code iommufd_global_device}), is one.
 */
public final class FauxDevice extends Device {
    private FauxDevice(String name) {
        super(name, null);
    }

    /**
     * {@code faux_device_create}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a blank name
     */
    public static FauxDevice create(String name) {
        return new FauxDevice(name);
    }

    @Override
    public BusType bus() {
        return BusType.FAUX;
    }

    @Override
    public boolean matches(MatchEntry entry) {
        return false;
    }
}
