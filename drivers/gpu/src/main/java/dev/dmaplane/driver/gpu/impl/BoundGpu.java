package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.accel.AccelCore;
import dev.dmaplane.accel.sched.SchedEntity;
import dev.dmaplane.accel.spi.AccelDeviceHandle;
import dev.dmaplane.accel.spi.Aperture;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.accel.spi.VramInfo;
import dev.dmaplane.accel.sched.SchedJob;
import dev.dmaplane.accel.sched.SchedPriority;
import dev.dmaplane.accel.sched.Scheduler;
import dev.dmaplane.device.AuxDevice;
import dev.dmaplane.device.BoundDevice;
import dev.dmaplane.dmaengine.DmaChannel;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.irq.IrqVectors;
import dev.dmaplane.machine.Machine;
import dev.dmaplane.pci.Bar;
import dev.dmaplane.pci.PciFunction;

import java.util.List;

import static dev.dmaplane.driver.gpu.model.GpuRegs.*;

/**
 * One bound GPU ({@code struct amdgpu_device} after {@code amdgpu_device_init}). Probe in a PCI driver's order
 * ({@code Documentation/PCI/pci.rst}), each step undone by devres in reverse: memory decoding, the ID check, the DMA
 * mask, bus mastering, one MSI-X vector per engine, the VM manager (address spaces destroyed after the engines
 * stop), the engines (ring, vector handler, scheduler), the kernel mover, the accel core registration
 * ({@link GpuAccelProvider}; unregistered before the engines stop, after their schedulers finished when the
 * hardware is gone), the dmaengine channel and its auxiliary device
 * (removed first). The page-table pool is the top of the CPU-visible VRAM window, a reserved range of the
 * {@link VramInfo} the core's VRAM manager gets ({@code amdgpu_vram_mgr_reserve_range}).
 */
public final class BoundGpu implements BoundDevice {
    private final PciFunction fn;
    private final long vramSize;
    private final long visibleSize;
    private final GpuEngine[] engines = new GpuEngine[ENGINE_COUNT];
    private GpuVmManager vms;
    private KernelMover mover;
    private GpuDmaChannel dma;
    private AuxDevice aux;
    private String accelName;

    private BoundGpu(PciFunction fn, long vramSize, long visibleSize) {
        this.fn = fn;
        this.vramSize = vramSize;
        this.visibleSize = visibleSize;
    }

    static BoundGpu probe(Machine machine, PciFunction fn, GpuOptions options, int auxId) {
        Bar.Mmio regs = fn.bar(0).orElseThrow(() -> new ErrnoException(Errno.ENODEV, fn.name()
                + ": no BAR0, no GPU registers")).mmio();
        int windowBar = vramBar(fn);
        Bar.Memory window = fn.bar(windowBar).orElseThrow().memory();
        fn.setMemorySpace(true);
        fn.devres().add("pci_disable_device", () -> fn.setMemorySpace(false));
        long id = regs.read(REG_ID, 8);
        ErrnoException.check(id == ID_VALUE, Errno.ENODEV, String.format("%s: REG_ID reads %#x, not the GPU",
                fn.name(), id));
        BoundGpu gpu = new BoundGpu(fn, regs.read(REG_VRAM_SIZE, 8), regs.read(REG_VISIBLE_SIZE, 8));
        ErrnoException.check(gpu.visibleSize == window.size() && options.pageTableBytes() < gpu.visibleSize,
                Errno.ENODEV, String.format("%s: visible VRAM %#x, window %#x, page tables %#x do not fit", fn.name(),
                        gpu.visibleSize, window.size(), options.pageTableBytes()));
        fn.dma().setDmaMask((1L << 44) - 1); // DMA_BIT_MASK(44), as amdgpu_gmc_v9 sets; bit 63 is the aperture
        fn.setMaster(true);
        fn.devres().add("pci_clear_master", () -> fn.setMaster(false));
        IrqVectors irqs = IrqVectors.alloc(fn, ENGINE_COUNT, ENGINE_COUNT, IrqVectors.PCI_IRQ_MSIX);
        PageTablePool pool = new PageTablePool(window, gpu.visibleSize - options.pageTableBytes(),
                options.pageTableBytes());
        gpu.vms = new GpuVmManager(regs, window, pool);
        fn.devres().add("amdgpu_vm_manager_fini", () -> gpu.vms.live().forEach(GpuAddressSpace::destroy));
        for (int e = 0; e < ENGINE_COUNT; e++) {
            GpuEngine engine = new GpuEngine(fn, regs, irqs, e, options.ringEntries(), options.jobTimeout(),
                    machine.tracer());
            gpu.engines[e] = engine;
            fn.devres().add("amdgpu_ring_fini " + engine.name(), () -> engine.shutdown(fn));
        }
        gpu.mover = new KernelMover(gpu.engines[ENGINE_CE0].scheduler());
        VramInfo vram = new VramInfo(fn, windowBar, gpu.vramSize, gpu.visibleSize,
                List.of(new VramInfo.Range(pool.base(), pool.size())));
        AccelDeviceHandle accel = AccelCore.of(machine).register(new GpuAccelProvider(fn, vram, gpu.vms, gpu.mover,
                gpu.engines));
        gpu.accelName = accel.name();
        fn.devres().add("drm_dev_unplug " + accel.name(), () -> gpu.unplug(accel));
        gpu.dma = new GpuDmaChannel(fn.bdf() + " dma0chan0", gpu.engines[ENGINE_CE1].scheduler(),
                options.jobTimeout().multipliedBy(2));
        fn.devres().add("dma_async_device_unregister", gpu.dma::close);
        gpu.aux = machine.devices().addAuxDevice(fn, "gpu", "dma", auxId, gpu.dma);
        return gpu;
    }

    /**
     * Unregisters from the core ({@code drm_dev_unplug}) after finishing the schedulers: every job not done ends
     * {@code ECANCELED} and the engines are stopped, as {@code amdgpu_pci_remove} unplugs the DRM device first and
     * {@code amdgpu_fence_driver_hw_fini} then force-completes the fences instead of waiting for the rings, whether the
     * hardware left the slot or is being unbound. The core's revoke of exported objects and its teardown of backings
     * wait for those fences, so a hung job can hold neither up until its timeout.
     */
    private void unplug(AccelDeviceHandle accel) {
        for (GpuEngine e : engines) {
            e.scheduler().fini();
        }
        accel.unregister();
    }

    /** The memory BAR: the CPU-visible VRAM window. */
    private static int vramBar(PciFunction fn) {
        for (int i = 1; i < 6; i++) {
            var bar = fn.bar(i);
            if (bar.isPresent() && bar.get().backing() instanceof Bar.Memory) {
                return i;
            }
        }
        throw new ErrnoException(Errno.ENODEV, fn.name() + ": no memory BAR, no VRAM window");
    }

    public PciFunction function() {
        return fn;
    }

    /** Total VRAM in bytes. */
    public long vramSize() {
        return vramSize;
    }

    /** CPU-visible VRAM in bytes (the BAR window). */
    public long visibleVramSize() {
        return visibleSize;
    }

    /** The VRAM range the driver keeps for page tables: not for the VRAM manager. */
    public GpuRun reservedVram() {
        return new GpuRun(Aperture.VRAM, vms.pool().base(), vms.pool().size());
    }

    /** Page-table pages in use. */
    public int pageTablePages() {
        return vms.pool().usedPages();
    }

    /** Engine {@code e}'s scheduler ({@code ENGINE_CE0}, {@code ENGINE_CE1}, {@code ENGINE_COMPUTE}). */
    public Scheduler scheduler(int e) {
        ErrnoException.check(e >= 0 && e < ENGINE_COUNT, Errno.EINVAL, "engine " + e + " outside 0.."
                + (ENGINE_COUNT - 1));
        return engines[e].scheduler();
    }

    /** Engine {@code e}, for tests that stand in for its hardware. */
    GpuEngine engine(int e) {
        return engines[e];
    }

    /** A new entity of {@code priority} on engine {@code e} ({@code drm_sched_entity_init}). */
    public SchedEntity entity(int e, SchedPriority priority) {
        return SchedEntity.create(scheduler(e), priority);
    }

    /** Submits {@code job} on {@code entity} (init, arm, push); its finished fence. */
    public Fence submit(SchedEntity entity, GpuJob job) {
        SchedJob j = SchedJob.init(entity, job.commands().size(), job);
        j.arm();
        j.push();
        return j.finished();
    }

    /** A new GPU address space on a free VM slot. */
    public GpuAddressSpace createVm() {
        return vms.create();
    }

    /** A kernel move between runs (VM 0, physical), on ce0 at KERNEL priority; its finished fence. */
    public Fence move(List<GpuRun> from, List<GpuRun> to) {
        return mover.move(from, to, List.of());
    }

    /** Zeroes {@code runs} on ce0 at KERNEL priority; its finished fence. */
    public Fence clear(List<GpuRun> runs) {
        return mover.clear(runs);
    }

    /** The accel device the core registered for this GPU ({@code accel0}, ...). */
    public String accelName() {
        return accelName;
    }

    /** The dmaengine channel on ce1. */
    public DmaChannel dmaChannel() {
        return dma;
    }

    /** The auxiliary device {@code gpu.dma.<n>} carrying {@link #dmaChannel()}. */
    public AuxDevice auxDevice() {
        return aux;
    }

    /** Nothing to do here: devres releases everything in reverse, the auxiliary device first. */
    @Override
    public void remove() {
    }
}
