package dev.dmaplane.perftest;

import dev.dmaplane.device.Device;
import dev.dmaplane.driver.siw.SiwDriver;
import dev.dmaplane.driver.softroce.host.SoftRoceHost;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.rdma.RdmaCore;

import java.io.PrintStream;
import java.net.InetAddress;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.stream.Stream;

/**
 * A machine of its own with the Soft-RoCE driver (or siw) bound, for plain-classpath use. Kept apart from {@link Perftest}
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
            if (!HCAS.containsKey(device) && !SIW.containsKey(device)) {
                throw noDevice(device);
            }
        }

        @Override
        public Wire.Station up(String device, InetAddress ip) {
            check(device);
            if (SIW.containsKey(device)) { // siw0 .. this one attached, this one at ip: it is named in attach order
                return new SiwHost(Map.of(SIW.get(device), ip), SIW.keySet().stream().sorted()
                        .filter(d -> d.compareTo(device) <= 0).toList());
            }
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
                    public String pcap(Path file) {
                        return host.pcap(file.toString());
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

    /** The siw devices an in-process run over iWARP attaches, by the name siw gives each (attach order). */
    static final Map<String, String> SIW = Map.of("siw0", "0000:04:00.0", "siw1", "0000:05:00.0");

    /**
     * Both ends in this process from {@code device} to the other HCA of its driver (rxe0 and rxe1, or siw0 and siw1
     * attached to the same two functions, {@code rdma link add siwN type siw netdev ethN}, at the netdev addresses
     * {@code siwAddresses} gives by BDF, {@code 127.0.0.<bus>} for one it does not name).
     *
     * @throws ErrnoException {@code ENODEV} for a device that is none of these
     */
    static PerfResult run(PerfConfig cfg, String device, Map<String, InetAddress> siwAddresses) {
        return run(cfg, device, siwAddresses, null, text -> {
        });
    }

    /** {@link #run(PerfConfig, String, Map)}, printing the report on {@code out} as it is made. */
    static PerfResult run(PerfConfig cfg, String device, Map<String, InetAddress> siwAddresses, PrintStream out) {
        return run(cfg, device, siwAddresses, out, null);
    }

    /**
     * {@link #run(PerfConfig, String, Map, PrintStream)}, with every frame both HCAs send written to {@code pcap} as
     * it is on the wire (the driver's {@code pcap} command; null: no capture), the file closed when the run ends.
     *
     * @throws ErrnoException {@code EINVAL} for an invalid file name, {@code EIO} when it cannot be written
     */
    static PerfResult run(PerfConfig cfg, String device, Map<String, InetAddress> siwAddresses, PrintStream out,
                          Path pcap) {
        return run(cfg, device, siwAddresses, pcap, text -> {
            out.print(text);
            out.flush();
        });
    }

    private static PerfResult run(PerfConfig cfg, String device, Map<String, InetAddress> siwAddresses, Path pcap,
                                  Consumer<String> print) {
        if (HCAS.containsKey(device)) {
            try (SoftRoceHost host = SoftRoceHost.boot()) {
                if (pcap != null) {
                    print.accept(host.pcap(pcap.toString()) + "\n");
                }
                return Perftest.run(host.machine(), host.core(), cfg, device, other(HCAS, device),
                        Perftest.BeforeCheck.NONE, Header.psns(), print);
            }
        }
        if (!SIW.containsKey(device)) {
            throw noDevice(device);
        }
        try (SiwHost host = new SiwHost(siwAddresses, SIW.keySet().stream().sorted().toList())) {
            if (pcap != null) {
                print.accept(host.pcap(pcap) + "\n");
            }
            return Perftest.run(host.machine(), host.core(), cfg, device, other(SIW, device),
                    Perftest.BeforeCheck.NONE, Header.psns(), print);
        }
    }

    private static ErrnoException noDevice(String device) {
        return new ErrnoException(Errno.ENODEV, "perftest: no RDMA device " + device + " (devices: "
                + String.join(", ", Stream.concat(HCAS.keySet().stream(), SIW.keySet().stream()).sorted().toList())
                + ")");
    }

    /**
     * A machine of its own with siw attached to the functions of {@code devices}, in that order
     * ({@code rdma link add siwN type siw netdev ethN}), at the addresses {@code addresses} gives by BDF.
     */
    private static final class SiwHost implements Wire.Station {
        private final Machine m = Machine.bootDefault();
        private final RdmaCore core;
        private final SiwDriver siw;

        SiwHost(Map<String, InetAddress> addresses, List<String> devices) {
            try {
                core = new RdmaCore(m.tracer());
                siw = new SiwDriver(core, addresses);
                m.devices().registerDriver(siw);
                for (String dev : devices) {
                    Device fn = m.devices().findDevice(SIW.get(dev)).orElseThrow();
                    m.devices().setDriverOverride(fn, SiwDriver.NAME);
                    m.devices().bind(fn, siw);
                }
            } catch (RuntimeException e) {
                close();
                throw e;
            }
        }

        @Override
        public Machine machine() {
            return m;
        }

        @Override
        public RdmaCore core() {
            return core;
        }

        @Override
        public String pcap(Path file) {
            return siw.pcap(file.toString());
        }

        @Override
        public void close() {
            try {
                if (siw != null) {
                    m.devices().unregisterDriver(siw);
                    siw.deactivate();
                }
            } finally {
                try {
                    if (core != null) {
                        core.close();
                    }
                } finally {
                    m.close();
                }
            }
        }
    }

    private static String other(Map<String, String> pair, String device) {
        return pair.keySet().stream().filter(d -> !d.equals(device)).findFirst().orElseThrow();
    }
}
