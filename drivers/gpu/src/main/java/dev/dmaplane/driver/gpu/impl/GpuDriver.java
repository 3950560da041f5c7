package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.device.Device;
import dev.dmaplane.device.Driver;
import dev.dmaplane.device.MatchEntry;
import dev.dmaplane.device.MatchTable;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.PciFunction;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

import java.util.List;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * {@code gpu}, the PCI driver of issue 12's GPU (1da0:0001, class 0x030200, a 3D controller), cut as amdgpu and xe
 * are: {@link BoundGpu} probes the function, {@link GpuEngine} runs each engine's ring under drm_sched,
 * {@link GpuVmManager} the VM slots, {@link KernelMover} the kernel's moves and clears, {@link GpuDmaChannel} a
 * dmaengine channel published on the auxiliary bus as {@code gpu.dma.<n>}.
 */
@Component(service = Driver.class, immediate = true)
public final class GpuDriver implements Driver {
    /** The driver's name. */
    public static final String NAME = "gpu";
    /** The auxiliary device's match name: {@code <module>.<device>}. */
    public static final String AUX_DMA = "gpu.dma";

    private final Machine machine;
    private final GpuOptions options;
    private final List<BoundGpu> bound = new CopyOnWriteArrayList<>();
    private final AtomicInteger auxIds = new AtomicInteger();

    @Activate
    public GpuDriver(@Reference Machine machine) {
        this(machine, GpuOptions.DEFAULT);
    }

    public GpuDriver(Machine machine, GpuOptions options) {
        this.machine = machine;
        this.options = options;
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public MatchTable matchTable() {
        return MatchTable.of(new MatchEntry.Pci(0x1da0, 0x0001, MatchEntry.ANY_ID, MatchEntry.ANY_ID, 0x030200,
                0xFFFFFF, 0));
    }

    @Override
    public BoundDevice probe(Device device, MatchEntry match) {
        if (!(device instanceof PciFunction fn)) {
            throw new ErrnoException(Errno.ENODEV, device.name() + " is not a PCI function");
        }
        BoundGpu gpu = BoundGpu.probe(machine, fn, options, auxIds.getAndIncrement());
        bound.add(gpu);
        fn.devres().add("gpu unlist", () -> bound.remove(gpu));
        return gpu;
    }

    /** The GPU bound to {@code bdf}, if any. */
    public Optional<BoundGpu> gpu(String bdf) {
        return bound.stream().filter(g -> g.function().name().equals(bdf)).findFirst();
    }
}
