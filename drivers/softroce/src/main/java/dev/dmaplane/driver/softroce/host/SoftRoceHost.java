package dev.dmaplane.driver.softroce.host;

import dev.dmaplane.driver.softroce.SoftRoceDriver;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;

/**
 * A host with Soft-RoCE up, for programs and tests on a plain class path: a {@link Machine}, its {@link RdmaCore}
 * (ib_core) and the rxe driver bound to its HCA functions, as {@code modprobe rdma_rxe} leaves a Linux box
 * ({@code rxe0} and {@code rxe1} on the default machine). In the OSGi runtime the same pieces come as services.
 * {@link #close()} unbinds the driver, closes the core and, when this host booted it, the machine.
 */
public final class SoftRoceHost implements AutoCloseable {
    private final Machine machine;
    private final boolean ownsMachine;
    private final RdmaCore core;
    private final SoftRoceDriver driver;
    private boolean closed;

    private SoftRoceHost(Machine machine, boolean ownsMachine) {
        this.machine = machine;
        this.ownsMachine = ownsMachine;
        this.core = new RdmaCore(machine.tracer());
        this.driver = new SoftRoceDriver(core);
        try {
            machine.devices().registerDriver(driver);
        } catch (RuntimeException e) {
            core.close();
            throw e;
        }
    }

    /** Boots the embedded default machine with Soft-RoCE on its two HCAs. */
    public static SoftRoceHost boot() {
        Machine m = Machine.bootDefault();
        try {
            return new SoftRoceHost(m, true);
        } catch (RuntimeException e) {
            m.close();
            throw e;
        }
    }

    /**
     * Brings Soft-RoCE up on a machine the caller booted and keeps: {@link #close()} leaves the machine running.
     *
     * @throws ErrnoException {@code EINVAL} for a null or closed machine; {@code EEXIST} if the rxe driver is
     *                        already registered with it
     */
    public static SoftRoceHost on(Machine machine) {
        if (machine == null || machine.isClosed()) {
            throw new ErrnoException(Errno.EINVAL, "Soft-RoCE needs a running machine, not " + machine);
        }
        return new SoftRoceHost(machine, false);
    }

    public Machine machine() {
        return machine;
    }

    /** The RDMA core the rxe devices registered with: {@code core.device("rxe0")}. */
    public RdmaCore core() {
        return core;
    }

    /** Unbinds the driver (disassociating every open context), closes the core, and closes a machine it booted. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            if (!machine.isClosed() && machine.devices().drivers().contains(driver)) {
                machine.devices().unregisterDriver(driver);
            }
            core.close();
        } finally {
            if (ownsMachine) {
                machine.close();
            }
        }
    }
}
