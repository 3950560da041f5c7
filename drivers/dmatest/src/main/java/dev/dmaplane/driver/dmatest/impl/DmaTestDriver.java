package dev.dmaplane.driver.dmatest.impl;

import dev.dmaplane.device.AuxDevice;
import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.dmaengine.DmaChannel;
import dev.dmaplane.driver.dmatest.DmaTestResult;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.iommu.IommuFault;
import dev.dmaplane.iommu.IommuGroup;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceRegistration;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.Hashtable;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.concurrent.ConcurrentHashMap;

/**
 * {@code dmatest}: the DMA engine self test of the kernel's {@code drivers/dma/dmatest.c}, a dmaengine client. It
 * binds to the auxiliary device {@code gpu.dma.<n>} the GPU driver publishes with a channel on its copy engine
 * ({@code auxiliary_bus.rst}), takes the {@link DmaChannel} from it, maps its buffers for the channel's device (the
 * GPU's PCI function, the aux device's parent), runs the self test ({@link SelfTest}) and publishes a
 * {@link DmaTestResult} service for the device; remove withdraws it and releases everything ({@link DmaTestDevice}).
 *
 * <p>Memory: the test buffers are ordinary host pages taken from the machine's RAM ({@code alloc_pages}, what
 * dmatest's {@code kmalloc} gives) and streaming-mapped per transfer ({@code dma_map_single}), so each transfer
 * exercises IOVA allocation, directions, sync and unmap, and so a buffer can be unmapped while its page stays, which
 * the fault check needs.
 */
@Component(service = Driver.class, immediate = true)
public final class DmaTestDriver implements Driver {
    private static final Logger LOG = LoggerFactory.getLogger(DmaTestDriver.class);
    /** The driver's name. */
    public static final String NAME = "dmatest";
    /** The auxiliary device name under which the GPU driver offers its dmaengine channel. */
    static final String AUX_DMA = "gpu.dma";
    /** The GPU driver's dmaengine channels. */
    static final MatchTable TABLE = MatchTable.of(MatchEntry.Auxiliary.of(AUX_DMA));

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
        if (!(device instanceof AuxDevice aux)) {
            throw new ErrnoException(Errno.ENODEV, device.name() + " is not an auxiliary device");
        }
        DmaChannel channel = aux.platformData(DmaChannel.class);
        Device dmaDevice = aux.parent().orElseThrow(() -> new ErrnoException(Errno.ENODEV,
                aux.name() + " has no parent device to DMA as"));
        DmaTestDevice d = DmaTestDevice.probe(dmaDevice, channel, machine.memory(), params, iommuOf(dmaDevice),
                publisher);
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
    private SelfTest.IommuWatch iommuOf(Device dev) {
        return new SelfTest.IommuWatch() {
            @Override
            public boolean translated() {
                return dev instanceof PciFunction fn && machine.iommu().enabled() && machine.iommu().groupOf(fn)
                        .map(IommuGroup::domain).map(d -> d.type().paging()).orElse(false);
            }

            @Override
            public OptionalLong lastWriteFault(long sinceNanos) {
                return machine.iommu().faults().stream().filter(f -> f.device().equals(dev.name()) && f.write()
                        && f.timeNanos() - sinceNanos >= 0).mapToLong(IommuFault::iova).reduce((a, b) -> b);
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
                    // expected when the bundle stopped first: the framework withdrew the service with it, hence debug
                    LOG.debug("DmaTestResult service already unregistered", alreadyGone);
                }
            };
        };
    }
}
