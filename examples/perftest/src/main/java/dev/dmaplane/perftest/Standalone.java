package dev.dmaplane.perftest;

import dev.dmaplane.driver.softroce.host.SoftRoceHost;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;

import java.io.PrintStream;
import java.net.InetAddress;
import java.util.Map;

/**
 * A machine of its own with the Soft-RoCE driver bound, for plain-classpath use. Kept apart from {@link Perftest}
 * so that the bundle (which imports the driver package optionally: it is private to the driver bundle) loads
 * without it.
 */
final class Standalone {
    /** The default machine's HCA functions, by the name the rxe driver gives each (probe order). */
    static final Map<String, String> HCAS = Map.of("rxe0", "0000:04:00.0", "rxe1", "0000:05:00.0");

    /** Runs between processes bring their HCA up on the default machine, its port on UDP. */
    static final Wire.Stations STATIONS = new Wire.Stations() {
        @Override
        public void check(String device) {
            if (!HCAS.containsKey(device)) {
                throw new ErrnoException(Errno.ENODEV, "perftest: no RDMA device " + device + " (devices: "
                        + String.join(", ", HCAS.keySet().stream().sorted().toList()) + ")");
            }
        }

        @Override
        public Wire.Station up(String device, InetAddress ip) {
            check(device);
            Machine m = Machine.bootDefault();
            try {
                SoftRoceHost host = SoftRoceHost.on(m, Map.of(HCAS.get(device), ip));
                return new Wire.Station() {
                    @Override
                    public Machine machine() {
                        return m;
                    }

                    @Override
                    public RdmaCore core() {
                        return host.core();
                    }

                    @Override
                    public void close() {
                        try {
                            host.close();
                        } finally {
                            m.close();
                        }
                    }
                };
            } catch (RuntimeException e) {
                m.close();
                throw e;
            }
        }
    };

    private Standalone() {
    }

    static PerfResult run(PerfConfig cfg) {
        try (SoftRoceHost host = SoftRoceHost.boot()) {
            return Perftest.run(host.machine(), host.core(), cfg);
        }
    }

    static PerfResult run(PerfConfig cfg, PrintStream out) {
        try (SoftRoceHost host = SoftRoceHost.boot()) {
            return Perftest.run(host.machine(), host.core(), cfg, out);
        }
    }
}
