package dev.dmaplane.rdma.loopback;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.pci.PciFunction;
import dev.dmaplane.rdma.RdmaCore;
import dev.dmaplane.rdma.spi.NetdevInfo;
import dev.dmaplane.rdma.spi.RdmaDeviceHandle;
import dev.dmaplane.rdma.verbs.DeviceAttr;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BiFunction;

/**
 * A PCI driver for the machine's RDMA HCA functions (vendor 0x1da0, device 0x0002) that puts a
 * {@link LoopbackProvider} under the core for each one it binds, and unregisters it in remove. The n-th binding
 * (from 0) gets netdev {@code eth<n>} with MAC {@code 02:1d:a0:00:00:<n+1>}; the attributes are made knowing it, so
 * the node GUID can come from the MAC as rxe's does.
 */
public final class LoopbackDriver implements Driver {
    private final RdmaCore core;
    private final BiFunction<Device, NetdevInfo, DeviceAttr> attrs;
    public final Map<String, LoopbackProvider> providers = new ConcurrentHashMap<>();
    private final AtomicInteger probes = new AtomicInteger();

    public LoopbackDriver(RdmaCore core, BiFunction<Device, NetdevInfo, DeviceAttr> attrs) {
        this.core = core;
        this.attrs = attrs;
    }

    @Override
    public String name() {
        return "loopback-hca";
    }

    @Override
    public MatchTable matchTable() {
        return MatchTable.of(MatchEntry.Pci.of(0x1da0, 0x0002));
    }

    @Override
    public BoundDevice probe(Device device, MatchEntry match) {
        PciFunction fn = (PciFunction) device;
        fn.setMaster(true);
        fn.dma().setDmaMask(-1L);
        int n = probes.getAndIncrement();
        NetdevInfo netdev = LoopbackProvider.defaultNetdev("eth" + n, n + 1, "10.0.0." + (n + 1), "fd00::" + (n + 1));
        LoopbackProvider p = new LoopbackProvider(fn, attrs.apply(fn, netdev), netdev);
        RdmaDeviceHandle h = core.registerDevice("rxe%d", p);
        p.attach(h);
        providers.put(h.name(), p);
        return () -> {
            h.unregister();
            providers.remove(h.name());
            fn.setMaster(false);
        };
    }
}
