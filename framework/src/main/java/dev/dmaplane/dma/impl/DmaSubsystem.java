package dev.dmaplane.dma.impl;

import dev.dmaplane.device.Device;
import dev.dmaplane.dma.DmaApi;
import dev.dmaplane.dma.DmaDebug;
import dev.dmaplane.dma.DmaTraffic;
import dev.dmaplane.dma.PeerRouter;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.Iommu;
import dev.dmaplane.mem.PhysicalAddressMap;
import dev.dmaplane.trace.Tracer;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The DMA mapping core ({@code kernel/dma/mapping.c} with {@code dma-iommu} and {@code dma-direct}): makes the
 * per-device DMA API and checks, at unbind, that a driver left nothing mapped.
 */
public final class DmaSubsystem {
    final PhysicalAddressMap physical;
    final Iommu iommu;
    final DmaDebug debug;
    final Tracer tracer;
    final Swiotlb swiotlb;
    /** How the fabric below the root complex routes device requests; every request goes upstream until set. */
    volatile PeerRouter peerRouter = PeerRouter.NONE;
    private final Map<Device, DeviceDma> byDevice = new ConcurrentHashMap<>();
    /** The traffic of the devices that left; guarded by {@code trafficLock} with the removal from {@code byDevice}. */
    private final TrafficCounters departed = new TrafficCounters();
    private final Object trafficLock = new Object();

    /**
     * @param swiotlb bounce pool for pass-through devices whose mask does not reach a buffer; null for none
     */
    public DmaSubsystem(PhysicalAddressMap physical, Iommu iommu, DmaDebug debug, Tracer tracer, Swiotlb swiotlb) {
        this.physical = Objects.requireNonNull(physical, "physical");
        this.iommu = Objects.requireNonNull(iommu, "iommu");
        this.debug = Objects.requireNonNull(debug, "debug");
        this.tracer = Objects.requireNonNull(tracer, "tracer");
        this.swiotlb = swiotlb;
    }

    /** Creates the DMA API of a DMA-capable device ({@code dma_configure} at device add). */
    public DmaApi attach(Device device) {
        DeviceDma d = new DeviceDma(device, this);
        if (byDevice.putIfAbsent(device, d) != null) {
            throw new ErrnoException(Errno.EEXIST, device.name() + " already has a DMA API");
        }
        return d;
    }

    /**
     * Checks a device whose driver just left for mappings it still holds ({@code debug_dma_assert_idle} /
     * "pending DMA allocations while released from device"): each is reported with the site that made it, then
     * undone so that nothing stays mapped.
     *
     * @return the number of leaked mappings found
     */
    public int unbound(Device device) {
        DeviceDma d = byDevice.get(device);
        return d == null ? 0 : d.reclaimLeaks();
    }

    /** Forgets a device that left its bus; its leaks were reclaimed at unbind. */
    public void detach(Device device) {
        DeviceDma d;
        synchronized (trafficLock) {
            d = byDevice.remove(device);
            if (d != null) {
                departed.add(d.traffic);
            }
        }
        if (d != null) {
            d.reclaimLeaks();
        }
    }

    /** Live mappings of one device (streaming and coherent). */
    public int activeMappings(Device device) {
        DeviceDma d = byDevice.get(device);
        return d == null ? 0 : d.liveCount();
    }

    /** Live mappings of all devices. */
    public int activeMappings() {
        int n = 0;
        for (DeviceDma d : byDevice.values()) {
            n += d.liveCount();
        }
        return n;
    }

    /**
     * Installs the fabric's routing below the root complex: requests it delivers to a peer skip the IOMMU (PCIe
     * switch routing), the rest are translated as before.
     */
    public void setPeerRouter(PeerRouter router) {
        this.peerRouter = Objects.requireNonNull(router, "router");
    }

    /**
     * The traffic all devices, present or gone, put on the bus since boot: the sum of the present devices' counters
     * and of the departed ones' (folded in at {@link #detach}, after the driver's remove stopped the device's DMA).
     */
    public DmaTraffic traffic() {
        List<TrafficCounters> all = new ArrayList<>();
        synchronized (trafficLock) {
            all.add(departed);
            byDevice.values().forEach(d -> all.add(d.traffic));
            return TrafficCounters.sum(all);
        }
    }

    /** The bounce pool, or null. */
    public Swiotlb swiotlb() {
        return swiotlb;
    }
}
