package dev.dmaplane.driver.softroce.host;

import dev.dmaplane.driver.softroce.SoftRoceDriver;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;

import java.net.InetAddress;
import java.util.Map;

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

    private SoftRoceHost(Machine machine, boolean ownsMachine, Map<String, InetAddress> udp) {
        this.machine = machine;
        this.ownsMachine = ownsMachine;
        this.core = new RdmaCore(machine.tracer());
        try {
            this.driver = new SoftRoceDriver(core, udp);
        } catch (RuntimeException e) {
            core.close();
            throw e;
        }
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
            return new SoftRoceHost(m, true, Map.of());
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
        return on(machine, Map.of());
    }

    /**
     * {@link #on(Machine)} with the HCA functions named in {@code udp} (by BDF, {@code 0000:04:00.0}) on RoCEv2 over
     * UDP at the given IPv4 address (for example one of 127.0.0.0/8), where HCAs of other processes and hosts reach
     * them; the other functions stay on the in-process fabric.
     *
     * @throws ErrnoException {@code EINVAL} for a null or closed machine or an address that is not IPv4;
     *                        {@code EADDRINUSE} or {@code EADDRNOTAVAIL} when an address cannot be bound;
     *                        {@code EEXIST} if the rxe driver is already registered with the machine
     */
    public static SoftRoceHost on(Machine machine, Map<String, InetAddress> udp) {
        if (machine == null || machine.isClosed()) {
            throw new ErrnoException(Errno.EINVAL, "Soft-RoCE needs a running machine, not " + machine);
        }
        if (udp == null) {
            throw new ErrnoException(Errno.EINVAL, "Soft-RoCE over UDP needs a map of addresses, not null");
        }
        return new SoftRoceHost(machine, false, udp);
    }

    public Machine machine() {
        return machine;
    }

    /** The RDMA core the rxe devices registered with: {@code core.device("rxe0")}. */
    public RdmaCore core() {
        return core;
    }

    /**
     * {@code rxe:pcap FILE|off}: every packet the HCAs send from now on is written to {@code file} as the frame it is
     * on the wire (libpcap, for Wireshark and tshark); {@code off} closes the file, and so does {@link #close()}.
     *
     * @return what is captured, and where
     * @throws ErrnoException {@code EINVAL} for a missing or invalid file name, {@code EIO} when the file cannot be
     *                        written
     */
    public String pcap(String file) {
        return driver.pcap(file);
    }

    /**
     * Unbinds the driver (disassociating every open context), closes its capture (written whole), closes the core,
     * and closes a machine it booted.
     */
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
            driver.deactivate();
            core.close();
        } finally {
            if (ownsMachine) {
                machine.close();
            }
        }
    }
}
