package dev.dmaplane.driver.siw;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.spi.NetdevInfo;
import dev.dmaplane.rdma.spi.PcapSwitch;
import dev.dmaplane.rdma.spi.PciIbDevice;
import dev.dmaplane.rdma.spi.RdmaDeviceHandle;
import dev.dmaplane.rdma.verbs.AtomicCap;
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.DeviceCap;
import dev.dmaplane.shell.CommandUsage;
import org.apache.felix.service.command.Descriptor;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Reference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.net.InetAddress;
import java.net.NetworkInterface;
import java.net.SocketException;
import java.util.EnumSet;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * {@code siw} for dmaplane ({@code siw_main.c}): a software RNIC on top of an Ethernet function's netdev, its TCP
 * connections carried by the operating system's TCP/IP stack. Linux attaches it with
 * {@code rdma link add siw0 type siw netdev eth0}; here the Ethernet function is bound to this driver: the
 * machine file's plain NICs (1da0:0004, class 0x020000) by their ID, any other Ethernet function by
 * {@code driver_override} (as {@code driverctl set-override BDF siw}). Probe gives the function a netdev
 * ({@code eth<bus>}, MAC {@code 02:1d:a0:00:01:<bus>}, the MTU of the host interface that holds its address) whose
 * IPv4 address is the one configured for its BDF (by default {@code 127.0.0.<bus>}, on the loopback, where the
 * connections really go), registers an RDMA
 * device {@code siw%d} and starts its TX thread; remove unregisters the device (the core's clients hear of it
 * first, then its QPs go with their connections), closes its listeners and remaining connections and joins every
 * thread.
 */
@Component(service = {Driver.class, SiwDriver.class}, immediate = true, property = {
        "osgi.command.scope=siw",
        "osgi.command.function=pcap"})
public final class SiwDriver implements Driver {
    private static final Logger LOG = LoggerFactory.getLogger(SiwDriver.class);
    public static final String NAME = "siw";
    /** The plain Ethernet NIC of machine files (no RDMA of its own): siw's to attach to. */
    static final MatchTable TABLE = MatchTable.of(MatchEntry.Pci.of(0x1da0, 0x0004));
    /** {@code SIW_VENDOR_ID}: ASCII "bmt". */
    static final int VENDOR_ID = 0x626d74;
    /** System property naming a capture file the driver writes from its start ({@link #pcap}). */
    public static final String PCAP_PROPERTY = "dmaplane.siw.pcap";

    private final RdmaCore core;
    private final Map<String, InetAddress> addresses;
    final Map<String, SiwProvider> providers = new ConcurrentHashMap<>();
    private final PcapSwitch captures = new PcapSwitch(NAME);

    @Activate
    public SiwDriver(@Reference RdmaCore core) {
        this(core, Map.of());
    }

    /**
     * A driver whose netdevs have the IPv4 addresses {@code addresses} gives by BDF ({@code 0000:04:00.0}); a
     * function not named gets {@code 127.0.0.<bus>}.
     *
     * @throws ErrnoException {@code EINVAL} for an address that is not IPv4
     */
    public SiwDriver(RdmaCore core, Map<String, InetAddress> addresses) {
        this.addresses = PciIbDevice.ipv4ByBdf(NAME, addresses);
        this.core = core;
        String file = System.getProperty(PCAP_PROPERTY, "");
        if (!file.isBlank()) {
            pcap(file);
        }
    }

    /** Closes the capture, if one is on. */
    @Deactivate
    public void deactivate() {
        pcap("off");
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public MatchTable matchTable() {
        return TABLE;
    }

    /**
     * {@code siw:pcap FILE|off}: every MPA frame and FPDU the driver's connections send from now on is written to
     * {@code FILE} as the TCP segment it is (Ethernet, IPv4, TCP), in the libpcap format; {@code off} closes it.
     *
     * @return what is captured, and where
     * @throws ErrnoException {@code EINVAL} for a missing or invalid file name, {@code EIO} when it cannot be written
     */
    @Descriptor("captures every MPA frame and FPDU siw sends into FILE (libpcap), or stops with off")
    public String pcap(@Descriptor("FILE|off") String file) {
        return captures.turn(file, pcap -> {
            TcpCapture now = TcpCapture.of(pcap);
            for (SiwProvider p : providers.values()) {
                p.capture = now;
            }
        });
    }

    /** What the Gogo runtime calls when no form of a command takes its arguments: the command's usage, EINVAL. */
    public String _main(String... argv) {
        throw CommandUsage.wrongArguments(this, "siw", argv);
    }

    /**
     * {@code siw_query_device} with the limits of {@code siw.h}: no atomics, fast registration extensions only,
     * one SGE per READ, 6 SGEs, 80 inline bytes, ORD and IRD 128. Two limits are the core's, not siw's: regions
     * (65536, the key index space, where siw allows 1024000) and windows (1, the core's least; siw has none and
     * {@link SiwProvider#allocMw} refuses them).
     */
    static DeviceAttr attributes(NetdevInfo nd) {
        long guid = nd.eui48();
        return DeviceAttr.builder().fwVer("0.0.0").nodeGuid(guid).sysImageGuid(guid).vendorId(VENDOR_ID)
                .vendorPartId(0).maxMrSize(-1L >>> 1).pageSizeCap(4096)
                .caps(EnumSet.of(DeviceCap.MEM_MGT_EXTENSIONS))
                .atomicCap(AtomicCap.NONE)
                .maxQp(1024 * 100).maxQpWr(1024 * 32).maxSendSge(6).maxRecvSge(6).maxSgeRd(1)
                .maxCq(1024 * 100).maxCqe(1024 * 32 * 100).maxMr(0x10000).maxPd(1024 * 100)
                .maxQpRdAtom(128).maxQpInitRdAtom(128).maxResRdAtom(1024 * 100 * 128)
                .maxMw(1).maxSrq(1024 * 100).maxSrqWr(1024 * 32 * 10).maxSrqSge(6)
                .maxInlineData(80).build();
    }

    /**
     * The MTU of the host interface that holds {@code ip}, which the device's TCP connections really cross (65536 on
     * the loopback), so that an FPDU fills one TCP segment of it as siw sizes FPDUs by the socket's MSS; 1500 when
     * the address is not this host's (the connections then fail to bind, as siw without the address would).
     */
    static int hostMtu(InetAddress ip) {
        try {
            NetworkInterface nic = NetworkInterface.getByInetAddress(ip);
            if (nic == null && ip.isLoopbackAddress()) {
                // all of 127.0.0.0/8 is the loopback's, though only 127.0.0.1 is listed on it
                nic = NetworkInterface.networkInterfaces().filter(SiwDriver::loopback).findFirst().orElse(null);
            }
            return nic == null ? 1500 : Math.max(nic.getMTU(), 576);
        } catch (SocketException e) {
            LOG.warn("siw: the MTU of the interface of {} is unknown, 1500 assumed", ip, e);
            return 1500;
        }
    }

    private static boolean loopback(NetworkInterface nic) {
        try {
            return nic.isLoopback();
        } catch (SocketException e) {
            LOG.warn("siw: interface {} cannot be asked whether it is the loopback", nic.getName(), e);
            return false;
        }
    }

    @Override
    public BoundDevice probe(Device device, MatchEntry match) {
        PciFunction fn = PciIbDevice.pciFunction(NAME, device);
        if ((fn.classCode() >>> 16) != 0x02) {
            throw new ErrnoException(Errno.ENODEV, "siw: " + fn.bdf() + " is not a network controller (class 0x"
                    + Integer.toHexString(fn.classCode()) + "): siw needs a netdev");
        }
        InetAddress ip = addresses.get(fn.bdf().toString());
        if (ip == null) {
            ip = PciIbDevice.ipv4OnBus(fn, 127, 0, 0);
        }
        PciIbDevice.enableDma(fn);
        NetdevInfo nd = PciIbDevice.netdev(fn, 1, hostMtu(ip), ip);
        SiwProvider p = new SiwProvider(fn, attributes(nd), nd, ip);
        RdmaDeviceHandle h = PciIbDevice.register(core, fn, "siw%d", p, () -> { });
        p.start(h);
        captures.attach(pcap -> {
            p.capture = TcpCapture.of(pcap);
            providers.put(h.name(), p);
        });
        return () -> {
            // ib_unregister_device tells the clients first (the rdma_cm's DEVICE_REMOVAL) and frees the QPs, whose
            // connections close then (siw_destroy_qp); what is left, listeners and unbound connections, closes after
            h.unregister();
            p.stop();
            providers.remove(h.name());
            fn.setMaster(false);
        };
    }
}
