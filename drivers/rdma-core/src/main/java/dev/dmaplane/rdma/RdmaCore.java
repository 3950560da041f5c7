package dev.dmaplane.rdma;

import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.rdma.cm.RdmaCm;
import dev.dmaplane.rdma.cm.impl.CmaImpl;
import dev.dmaplane.rdma.impl.CoreImpl;
import dev.dmaplane.rdma.spi.RdmaDeviceHandle;
import dev.dmaplane.rdma.spi.RdmaProvider;
import dev.dmaplane.rdma.verbs.ResourceEntry;
import dev.dmaplane.trace.Tracer;

import java.security.SecureRandom;
import java.util.List;
import java.util.Optional;
import java.util.stream.Collectors;

/**
 * The RDMA core of one machine: the registry of RDMA devices that drivers register and applications open. Works
 * on a plain classpath; in the OSGi runtime one instance is offered as a service of this type. Thread-safe.
 */
public final class RdmaCore implements AutoCloseable {
    private final CoreImpl impl;
    private CmaImpl cm;
    private boolean closed;

    /** @param tracer where disassociations and the framework's pins and mappings are traced */
    public RdmaCore(Tracer tracer) {
        ErrnoException.requireNonNull(tracer, "tracer");
        this.impl = new CoreImpl(tracer);
    }

    /**
     * {@code ib_register_device}: puts a provider's device under the core. {@code name} may hold one {@code %d},
     * replaced by the lowest number not in use ({@code "rxe%d"} gives {@code rxe0}, {@code rxe1}, ...). The core
     * reads the device and port attributes and the ports' netdevs (GID tables), and sets the DMA device's maximum
     * segment size as ib_core does, so registered memory maps into few segments.
     *
     * @throws dev.dmaplane.errno.ErrnoException {@code EINVAL} for a bad name or attributes (no port, no page size
     *                                           at or below the CPU page size), {@code EEXIST} for a name in use,
     *                                           {@code ENODEV} when the DMA device has no DMA API
     */
    public RdmaDeviceHandle registerDevice(String name, RdmaProvider provider) {
        return impl.register(name, provider);
    }

    /** {@code ibv_get_device_list}: the registered devices, in registration order. */
    public List<RdmaDevice> devices() {
        return impl.devices();
    }

    /** The device named {@code name}, if registered. */
    public Optional<RdmaDevice> device(String name) {
        return impl.device(ErrnoException.requireNonNull(name, "device name"));
    }

    /** Every object of every context on every device ({@code rdma resource show}). */
    public List<ResourceEntry> resources() {
        return devices().stream().flatMap(d -> d.resources().stream()).toList();
    }

    /** {@link #resources()} as text, one object per line. */
    public String resShow() {
        return resources().stream().map(ResourceEntry::toString).collect(Collectors.joining("\n"));
    }

    /**
     * The RDMA connection manager of this core ({@code rdma_cm}), made on first use.
     *
     * @throws ErrnoException {@code ENODEV} once the core is closed
     */
    public synchronized RdmaCm cm() {
        if (closed) {
            throw new ErrnoException(Errno.ENODEV, "the RDMA core is closed");
        }
        if (cm == null) {
            cm = new CmaImpl(this, impl, new SecureRandom().nextInt());
            impl.addClient(cm);
        }
        return cm;
    }

    /** Closes the connection manager's channels, then unregisters every device (each context is disassociated). */
    @Override
    public void close() {
        CmaImpl c;
        synchronized (this) {
            closed = true;
            c = cm;
        }
        try {
            if (c != null) {
                c.close();
            }
        } finally {
            impl.close();
        }
    }
}
