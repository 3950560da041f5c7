package dev.dmaplane.driver.softroce;

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
import dev.dmaplane.rdma.verbs.DeviceAttr;
import dev.dmaplane.rdma.verbs.DeviceCap;
import dev.dmaplane.rdma.verbs.Gid;
import dev.dmaplane.rdma.verbs.OdpOp;
import dev.dmaplane.shell.CommandUsage;
import org.apache.felix.service.command.Descriptor;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Reference;

import java.net.InetAddress;
import java.util.EnumSet;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * {@code rdma_rxe} for dmaplane's HCA functions (vendor 0x1da0, device 0x0002): probe enables bus mastering, gives
 * the function a netdev ({@code eth<bus>}, MAC {@code 02:1d:a0:00:00:<bus>}, IPv4 {@code 10.0.0.<bus>}, MTU 1500)
 * attached to the driver's in-process fabric, registers an RDMA device {@code rxe%d} and starts its engine; remove
 * detaches from the fabric, stops the engine (no thread stays) and unregisters the device (the core disassociates
 * every context: outstanding work flushed, DEVICE_FATAL, regions unpinned and unmapped).
 */
@Component(service = {Driver.class, SoftRoceDriver.class}, immediate = true, property = {
        "osgi.command.scope=rxe",
        "osgi.command.function=carrier",
        "osgi.command.function=pcap"})
public final class SoftRoceDriver implements Driver {
    public static final String NAME = "rdma_rxe";
    static final MatchTable TABLE = MatchTable.of(MatchEntry.Pci.of(0x1da0, 0x0002));

    private final RdmaCore core;
    final Fabric fabric = new Fabric();
    final Map<String, SoftRoceProvider> providers = new ConcurrentHashMap<>();

    /** System property naming a capture file the driver writes from its start ({@link #pcap}). */
    public static final String PCAP_PROPERTY = "dmaplane.softroce.pcap";

    /**
     * System property: the UDP transports lose every this many datagrams they send (1 % is 100; unset or 0: none),
     * loss injection between processes for tests, as {@code UdpTransport}'s own knob in one.
     */
    public static final String UDP_DROP_EVERY_PROPERTY = "dmaplane.softroce.udp.dropEvery";

    /** System property: {@code true} makes the UDP transports swap each pair of datagrams they send. */
    public static final String UDP_SWAP_PAIRS_PROPERTY = "dmaplane.softroce.udp.swapPairs";

    /**
     * System property: {@code false} makes the UDP transports send and receive one datagram per system call through a
     * {@code DatagramChannel}, instead of in batches with {@code sendmmsg}/{@code recvmmsg} where Linux offers them.
     */
    public static final String UDP_NATIVE_PROPERTY = UdpSocket.NATIVE;

    /** Whether the UDP transports may use the batched native socket, from {@link #UDP_NATIVE_PROPERTY}. */
    private final boolean udpNative;

    /** Loss injection for the UDP transports, from {@link #UDP_DROP_EVERY_PROPERTY}. */
    private final int udpDropEvery;

    /** Reordering injection for the UDP transports, from {@link #UDP_SWAP_PAIRS_PROPERTY}. */
    private final boolean udpSwapPairs;

    /** The capture every engine of this driver writes to. */
    private final PcapSwitch captures = new PcapSwitch("rxe");

    /** The functions whose port is on UDP, by BDF ({@code 0000:04:00.0}), with the IPv4 address of each. */
    private final Map<String, InetAddress> udp;

    @Activate
    public SoftRoceDriver(@Reference RdmaCore core) {
        this(core, Map.of());
    }

    /**
     * A driver whose HCA functions named in {@code udp} (by BDF, {@code 0000:04:00.0}) get that IPv4 address and
     * send RoCEv2 over UDP sockets bound to it ({@link UdpTransport}), so that HCAs of other processes and hosts
     * reach them; the others stay on the driver's in-process fabric with {@code 10.0.0.<bus>}.
     *
     * Loss and reordering on those sockets follow {@link #UDP_DROP_EVERY_PROPERTY} and {@link #UDP_SWAP_PAIRS_PROPERTY},
     * batching {@link #UDP_NATIVE_PROPERTY}.
     *
     * @throws ErrnoException {@code EINVAL} for an address that is not IPv4, or a loss property that is not a whole
     *                        number of at least 0
     */
    public SoftRoceDriver(RdmaCore core, Map<String, InetAddress> udp) {
        this.udp = PciIbDevice.ipv4ByBdf("rxe", udp);
        String every = System.getProperty(UDP_DROP_EVERY_PROPERTY, "0").strip();
        try {
            udpDropEvery = Integer.parseInt(every);
        } catch (NumberFormatException e) {
            throw new ErrnoException(Errno.EINVAL, "rxe: " + UDP_DROP_EVERY_PROPERTY + " '" + every
                    + "' is not a whole number", e);
        }
        if (udpDropEvery < 0) {
            throw new ErrnoException(Errno.EINVAL, "rxe: " + UDP_DROP_EVERY_PROPERTY + " " + udpDropEvery
                    + " is negative");
        }
        udpSwapPairs = Boolean.getBoolean(UDP_SWAP_PAIRS_PROPERTY);
        udpNative = !"false".equals(System.getProperty(UDP_NATIVE_PROPERTY, "true").strip());
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

    /**
     * {@code rxe:pcap FILE|off}: every packet the driver's HCAs send from now on is written to {@code FILE} as the
     * frame it is on the wire (Ethernet, IPv4, UDP 4791, BTH and the rest, ICRC), in the libpcap format tcpdump and
     * Wireshark read; {@code off} closes the file. A new capture replaces (and closes) the one before.
     *
     * @return what is captured, and where
     * @throws ErrnoException {@code EINVAL} for a missing or invalid file name, {@code EIO} when the file cannot be
     *                        written
     */
    @Descriptor("captures every packet the HCAs send into FILE (libpcap), or stops with off")
    public String pcap(@Descriptor("FILE|off") String file) {
        return captures.turn(file, now -> {
            for (SoftRoceProvider p : providers.values()) {
                p.engine.capture = now;
            }
        });
    }

    @Override
    public String name() {
        return NAME;
    }

    /**
     * {@code rxe:carrier rxe0 down|up}: the carrier of the device's netdev goes away or comes back (a cable pulled or
     * plugged; rxe's netdev notifier, {@code NETDEV_CHANGE}). Down: the port goes DOWN, every context gets
     * PORT_ERR, {@code link_downed} counts it, and no packet leaves or reaches the port, so RC requests in flight
     * are retried and end in RETRY_EXC_ERR if the carrier stays away. Up: ACTIVE and PORT_ACTIVE, and the
     * retransmissions get through. Setting the state the port is in already changes nothing.
     *
     * @return the port's {@code rdma link} state afterwards
     * @throws ErrnoException {@code ENODEV} for a device this driver did not register, {@code EINVAL} for a state
     *                        other than {@code up} or {@code down}
     */
    @Descriptor("the carrier of the device's netdev goes down or comes back up")
    public String carrier(@Descriptor("DEV") String device, @Descriptor("up|down") String state) {
        SoftRoceProvider p = providers.get(String.valueOf(device));
        if (p == null) {
            throw new ErrnoException(Errno.ENODEV, "rxe: no device " + device + " (devices: "
                    + providers.keySet().stream().sorted().toList() + ")");
        }
        boolean up = switch (String.valueOf(state)) {
            case "up" -> true;
            case "down" -> false;
            default -> throw new ErrnoException(Errno.EINVAL, "rxe: carrier state '" + state + "': up or down");
        };
        p.carrier(up);
        return device + "/1 state " + p.portAttr(1).state() + " netdev " + p.netdev(1).name();
    }

    /** What the Gogo runtime calls when no form of a command takes its arguments: the command's usage, EINVAL. */
    public String _main(String... argv) {
        throw CommandUsage.wrongArguments(this, "rxe", argv);
    }

    @Override
    public MatchTable matchTable() {
        return TABLE;
    }

    /**
     * {@code rxe_init_device_param}: both GUIDs are the netdev's MAC as an EUI-64 ({@code addrconf_addr_eui48}, as in
     * {@code rxe_register_device}).
     */
    static DeviceAttr attributes(NetdevInfo nd) {
        long guid = nd.eui48();
        return DeviceAttr.builder().fwVer("0.2.0").nodeGuid(guid).sysImageGuid(guid).vendorId(0x1da0).vendorPartId(2)
                .caps(EnumSet.of(DeviceCap.MEM_WINDOW, DeviceCap.MEM_WINDOW_TYPE_2B, DeviceCap.MEM_MGT_EXTENSIONS,
                        DeviceCap.PORT_ACTIVE_EVENT, DeviceCap.RC_RNR_NAK_GEN, DeviceCap.N_NOTIFY_CQ,
                        DeviceCap.SRQ_RESIZE, DeviceCap.ON_DEMAND_PAGING))
                .rcOdpCaps(EnumSet.allOf(OdpOp.class))
                .build();
    }

    @Override
    public BoundDevice probe(Device device, MatchEntry match) {
        PciFunction fn = PciIbDevice.pciFunction("rxe", device);
        InetAddress ip = udp.get(fn.bdf().toString());
        // a UDP port binds first: a refused address leaves nothing behind
        UdpTransport socket = ip == null ? null : UdpTransport.bind(ip, udpNative);
        if (socket != null) {
            socket.dropEvery = udpDropEvery;
            socket.swapPairs = udpSwapPairs;
        }
        if (ip == null) {
            ip = PciIbDevice.ipv4OnBus(fn, 10, 0, 0);
        }
        PciIbDevice.enableDma(fn);
        // on UDP the netdev is the loopback's or a host's, jumbo frames: RoCE active MTU 4096
        NetdevInfo nd = PciIbDevice.netdev(fn, 0, socket == null ? 1500 : 9000, ip);
        Engine engine = new Engine(device.name(), socket == null ? fabric : socket, Gid.of(ip));
        SoftRoceProvider p = new SoftRoceProvider(fn, attributes(nd), nd, engine);
        RdmaDeviceHandle h = PciIbDevice.register(core, fn, "rxe%d", p, () -> {
            if (socket != null) {
                socket.close();
            }
        });
        engine.start(h);
        if (socket != null) {
            socket.start(engine);
        } else {
            fabric.attach(engine.gid(), engine);
        }
        captures.attach(pcap -> { // a capture turned on meanwhile sees this engine, or this engine sees it
            engine.capture = pcap;
            providers.put(h.name(), p);
        });
        return () -> {
            if (socket != null) {
                socket.close(); // its receive thread ends: nothing arrives any more
            } else {
                fabric.detach(engine);
            }
            engine.stop();
            h.unregister();
            providers.remove(h.name());
            fn.setMaster(false);
        };
    }
}
