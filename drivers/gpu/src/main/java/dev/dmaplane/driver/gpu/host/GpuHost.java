package dev.dmaplane.driver.gpu.host;

import dev.dmaplane.accel.AccelCore;
import dev.dmaplane.accel.AccelDevice;
import dev.dmaplane.driver.gpu.impl.GpuDriver;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;

import java.util.List;

/**
 * The GPU driver on a machine of a plain class path, as {@code modprobe} of a GPU driver leaves a Linux box: the
 * driver registered with the machine's driver core binds every GPU function the machine has (the default machine's
 * {@code 0000:03:00.0}, whose model {@code gpu} the class path provides), each registered with the machine's
 * {@link AccelCore} as {@code accel<N>}. In the OSGi runtime the driver is a DS component instead.
 * {@link #close()} unbinds the driver; the machine stays the caller's.
 */
public final class GpuHost implements AutoCloseable {
    private final Machine machine;
    private final GpuDriver driver;
    private boolean closed;

    private GpuHost(Machine machine) {
        this.machine = machine;
        this.driver = new GpuDriver(machine);
        machine.devices().registerDriver(driver);
    }

    /**
     * Registers the GPU driver with {@code machine}.
     *
     * @throws ErrnoException {@code EINVAL} for a null or closed machine; {@code EEXIST} if a driver named
     *                        {@code gpu} is already registered with it
     */
    public static GpuHost on(Machine machine) {
        if (machine == null || machine.isClosed()) {
            throw new ErrnoException(Errno.EINVAL, "the GPU driver needs a running machine, not " + machine);
        }
        return new GpuHost(machine);
    }

    public Machine machine() {
        return machine;
    }

    /** The accelerator core the GPUs registered with. */
    public AccelCore core() {
        return AccelCore.of(machine);
    }

    /** The accelerator devices of this driver, in registration order. */
    public List<AccelDevice> devices() {
        return core().devices().stream().filter(d -> d.driverName().equals(GpuDriver.NAME)).toList();
    }

    /** Unbinds the driver from every GPU (each accel context disassociated); idempotent. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        if (!machine.isClosed() && machine.devices().drivers().contains(driver)) {
            machine.devices().unregisterDriver(driver);
        }
    }
}
