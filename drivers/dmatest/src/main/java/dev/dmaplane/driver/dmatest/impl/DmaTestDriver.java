package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.driver.dmatest.DmaTestResult;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceRegistration;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

import java.util.Hashtable;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;

/**
 * {@code dmatest}: the DMA engine self test of the kernel's {@code drivers/dma/dmatest.c}, run on the copy engine
 * of the machine's GPU (see {@link dev.dmaplane.hw.copyengine.CopyEngineRegs}). It claims PCI class 0x030200
 * exactly (3D controller) and, by ID, vendor 0x1da0 device 0x0001; probe rejects a function whose BAR0 does not
 * identify as the copy engine. Probing sets the engine up (completion by its MSI-X interrupt unless
 * {@code polled}), runs the self test ({@link SelfTest}) and publishes a
 * {@link DmaTestResult} service for the device; remove withdraws it and releases everything
 * ({@link DmaTestDevice}).
 *
 * <p>Memory: the descriptor ring is coherent DMA memory ({@code dma_alloc_coherent}), the kernel's choice for
 * memory the CPU and the device both keep writing. The test buffers are ordinary host pages taken from the
 * machine's RAM ({@code alloc_pages}, what dmatest's {@code kmalloc} gives) and streaming-mapped per transfer
 * ({@code dma_map_single}), so each transfer exercises IOVA allocation, directions, sync and unmap, and so a
 * buffer can be unmapped while its page stays, which the fault check needs.
 */
@Component(service = Driver.class, immediate = true)
public final class DmaTestDriver implements Driver {
    /** The driver's name. */
    public static final String NAME = "dmatest";
    /** 3D controllers (class 0x030200 exactly), then the copy-engine GPU by vendor and device ID. */
    static final MatchTable TABLE = MatchTable.of(MatchEntry.Pci.ofClass(0x030200, 0xFFFFFF), MatchEntry.Pci.of(0x1da0, 0x0001));

    private final Machine machine;
    private final Parameters params;
    private final ResultPublisher publisher;
    private final Map<Device, DmaTestDevice> bound = new ConcurrentHashMap<>();

    @Activate
    public DmaTestDriver(BundleContext context, @Reference Machine machine) {
        this(machine, Parameters.DEFAULTS, services(context));
    }

    DmaTestDriver(Machine machine, Parameters params, ResultPublisher publisher) {
        this.machine = machine;
        this.params = params;
        this.publisher = publisher;
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public MatchTable matchTable() {
        return TABLE;
    }

    @Override
    public BoundDevice probe(Device device, MatchEntry match) {
        if (!(device instanceof PciFunction fn)) {
            throw new ErrnoException(Errno.ENODEV, device.name() + " is not a PCI function");
        }
        DmaTestDevice d = DmaTestDevice.probe(fn, machine.memory(), params, iommuOf(fn), publisher);
        bound.put(device, d);
        return () -> {
            bound.remove(device);
            d.remove();
        };
    }

    /** The bound state of {@code device}, if this driver is bound to it. */
    Optional<DmaTestDevice> bound(Device device) {
        return Optional.ofNullable(bound.get(device));
    }

    /** The results of the devices this driver is bound to. */
    List<DmaTestResult> results() {
        return bound.values().stream().map(DmaTestDevice::result).toList();
    }

    /** What the fault check asks of the IOMMU, answered from the machine's IOMMU and its fault log. */
    private SelfTest.IommuWatch iommuOf(PciFunction fn) {
        return new SelfTest.IommuWatch() {
            @Override
            public boolean translated() {
                return machine.iommu().enabled() && machine.iommu().groupOf(fn).map(IommuGroup::domain)
                        .map(d -> d.type().paging()).orElse(false);
            }

            @Override
            public boolean recordedWriteFault(long iova, long sinceNanos) {
                return machine.iommu().faults().stream().anyMatch(f -> f.device().equals(fn.name()) && f.write()
                        && f.iova() == iova && f.timeNanos() - sinceNanos >= 0);
            }
        };
    }

    /** Publishes each result as a {@link DmaTestResult} service with its numbers as service properties. */
    private static ResultPublisher services(BundleContext context) {
        return result -> {
            ServiceRegistration<DmaTestResult> reg = context.registerService(DmaTestResult.class, result,
                    new Hashtable<>(result.properties()));
            return () -> {
                try {
                    reg.unregister();
                } catch (IllegalStateException alreadyGone) {
                    // the bundle stopped first: the framework withdrew the service with it
                }
            };
        };
    }
}
