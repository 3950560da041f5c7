package dev.dmaplane.accel;

import dev.dmaplane.accel.impl.CoreImpl;
import dev.dmaplane.accel.spi.AccelDeviceHandle;
import dev.dmaplane.accel.spi.AccelProvider;
import dev.dmaplane.machine.Machine;

import java.util.List;
import java.util.Objects;
import java.util.Optional;

/**
 * The accelerator core of one machine ({@code drivers/accel/drm_accel.c} with DRM GEM and TTM behind it): the
 * registry of devices drivers register and applications open. One per machine ({@link #of}); in the OSGi runtime
 * it is offered as a service of this type. Thread-safe.
 */
public final class AccelCore implements AutoCloseable {
    private final CoreImpl impl;

    private AccelCore(Machine machine) {
        this.impl = new CoreImpl(machine);
    }

    /**
     * The core of {@code machine}, made on first use and kept by the machine ({@link Machine#attachment}).
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code ENODEV} for a closed machine
     */
    public static AccelCore of(Machine machine) {
        Objects.requireNonNull(machine, "machine");
        return machine.attachment(AccelCore.class, AccelCore::new);
    }

    /**
     * {@code drm_dev_register} of an accel device: named {@code accel<N>}, the lowest number free.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a provider whose VRAM BAR is missing, a
     *                                           register block or smaller than the visible window, or that has no
     *                                           engine; {@code ENODEV} when its DMA device has no DMA API
     */
    public AccelDeviceHandle register(AccelProvider provider) {
        return impl.register(provider);
    }

    /** The registered devices, in registration order. */
    public List<AccelDevice> devices() {
        return impl.devices();
    }

    public Optional<AccelDevice> device(String name) {
        return impl.device(name);
    }

    /**
     * Opens a context on the device named {@code name}.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code ENODEV} for no such device
     */
    public AccelContext open(String name) {
        return impl.open(name);
    }

    /** Unregisters every device. */
    @Override
    public void close() {
        impl.close();
    }
}
