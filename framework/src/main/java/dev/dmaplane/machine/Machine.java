package dev.dmaplane.machine;

import dev.dmaplane.device.DeviceCore;
import dev.dmaplane.mem.HostMemory;
import dev.dmaplane.trace.Tracer;

/**
 * One simulated host: RAM, the PCI hierarchy with its devices, the IOMMU, the driver core and the trace. Works on
 * a plain classpath; the OSGi runtime wraps one instance in a service.
 */
public final class Machine implements AutoCloseable {
    private final Tracer tracer;
    private final HostMemory memory;
    private final DeviceCore devices;

    private Machine(long memoryBytes) {
        this.tracer = new Tracer();
        this.memory = new HostMemory(memoryBytes);
        this.devices = new DeviceCore(tracer);
    }

    /** Boots the embedded default machine. */
    public static Machine bootDefault() {
        return new Machine(64L << 30);
    }

    public Tracer tracer() {
        return tracer;
    }

    public HostMemory memory() {
        return memory;
    }

    /** The driver core: devices, drivers, binding. */
    public DeviceCore devices() {
        return devices;
    }

    /** Unbinds every driver, removes every device and releases all memory. */
    @Override
    public void close() {
        var all = devices.devices();
        for (int i = all.size() - 1; i >= 0; i--) {
            if (all.get(i).isPresent() && all.get(i).parent().isEmpty()) {
                devices.removeDevice(all.get(i));
            }
        }
        memory.close();
    }
}
