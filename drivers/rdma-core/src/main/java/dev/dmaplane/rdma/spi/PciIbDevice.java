package dev.dmaplane.rdma.spi;

import dev.dmaplane.device.Device;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.RdmaCore;

import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.List;
import java.util.Map;

/**
 * What the probe of a PCI HCA driver does around {@code ib_register_device}: the function's bus mastering and 64-bit
 * DMA mask first ({@code pci_set_master}, {@code dma_set_mask_and_coherent}), and when registration fails, bus
 * mastering off again with whatever else the probe had set up, as the error path of a driver's probe undoes its steps
 * before {@code ib_dealloc_device}. A null argument is refused with {@code EINVAL}.
 */
public final class PciIbDevice {
    private PciIbDevice() {
    }

    /**
     * The PCI function a driver's probe was given.
     *
     * @throws ErrnoException {@code ENODEV} naming {@code device} when it is not a PCI function
     */
    public static PciFunction pciFunction(String driver, Device device) {
        ErrnoException.requireNonNull(driver, "pciFunction: driver");
        ErrnoException.requireNonNull(device, "pciFunction: device");
        if (!(device instanceof PciFunction fn)) {
            throw new ErrnoException(Errno.ENODEV, driver + ": " + device.name() + " is not a PCI function");
        }
        return fn;
    }

    /**
     * A copy of {@code addresses}, IPv4 addresses of functions by BDF ({@code 0000:04:00.0}).
     *
     * @throws ErrnoException {@code EINVAL} naming the BDF and the address that is not IPv4
     */
    public static Map<String, InetAddress> ipv4ByBdf(String driver, Map<String, InetAddress> addresses) {
        ErrnoException.requireNonNull(driver, "ipv4ByBdf: driver");
        ErrnoException.requireNonNull(addresses, "ipv4ByBdf: addresses");
        for (var e : addresses.entrySet()) {
            if (!(e.getValue() instanceof Inet4Address)) {
                throw new ErrnoException(Errno.EINVAL, driver + ": " + e.getKey() + " needs an IPv4 address, not "
                        + e.getValue());
            }
        }
        return Map.copyOf(addresses);
    }

    /**
     * The address {@code a.b.c.<bus>} a function with no address of its own gets ({@code 10.0.0.<bus>} for
     * {@code 0000:<bus>:00.0}).
     */
    public static InetAddress ipv4OnBus(PciFunction fn, int a, int b, int c) {
        ErrnoException.requireNonNull(fn, "ipv4OnBus: function");
        byte[] ip = {(byte) a, (byte) b, (byte) c, (byte) fn.bdf().bus()};
        try {
            return InetAddress.getByAddress(ip);
        } catch (UnknownHostException e) {
            throw new ErrnoException(Errno.EINVAL, fn.bdf() + ": " + e.getMessage(), e);
        }
    }

    /**
     * The netdev of a software HCA on {@code fn}: {@code eth<bus>} with the locally administered MAC
     * {@code 02:1d:a0:00:<unit>:<bus>}, {@code mtu} and the one address {@code ip}.
     */
    public static NetdevInfo netdev(PciFunction fn, int unit, int mtu, InetAddress ip) {
        ErrnoException.requireNonNull(fn, "netdev: function");
        ErrnoException.requireNonNull(ip, "netdev: address");
        int bus = fn.bdf().bus();
        return new NetdevInfo("eth" + bus, new byte[]{0x02, 0x1d, (byte) 0xa0, 0, (byte) unit, (byte) bus}, mtu,
                List.of(ip));
    }

    /** {@code pci_set_master} and {@code dma_set_mask_and_coherent(DMA_BIT_MASK(64))}: the function may master. */
    public static void enableDma(PciFunction fn) {
        ErrnoException.requireNonNull(fn, "enableDma: function");
        fn.setMaster(true);
        fn.dma().setDmaMask(-1L);
    }

    /**
     * {@code ib_register_device(provider, name)}; when it fails, {@code pci_clear_master} and then {@code undo} (what
     * else the probe had set up) before the failure goes on.
     */
    public static RdmaDeviceHandle register(RdmaCore core, PciFunction fn, String name, RdmaProvider provider,
                                            Runnable undo) {
        ErrnoException.requireNonNull(core, "register: core");
        ErrnoException.requireNonNull(fn, "register: function");
        ErrnoException.requireNonNull(undo, "register: undo");
        try {
            return core.registerDevice(name, provider);
        } catch (RuntimeException e) {
            fn.setMaster(false);
            undo.run();
            throw e;
        }
    }
}
