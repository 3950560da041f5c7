package dev.dmaplane.driver.gpu.impl;

import dev.dmaplane.accel.Command;
import dev.dmaplane.accel.sched.Scheduler;
import dev.dmaplane.accel.spi.AccelProvider;
import dev.dmaplane.accel.spi.BoMove;
import dev.dmaplane.accel.spi.EngineInfo;
import dev.dmaplane.accel.spi.GpuRun;
import dev.dmaplane.accel.spi.GpuVmOps;
import dev.dmaplane.accel.spi.VramInfo;
import dev.dmaplane.device.Device;
import dev.dmaplane.errno.Errno;
import dev.dmaplane.errno.ErrnoException;
import dev.dmaplane.fence.Fence;
import dev.dmaplane.pci.PciFunction;

import java.util.List;
import java.util.stream.IntStream;

import static dev.dmaplane.driver.gpu.model.GpuRegs.ENGINE_COMPUTE;
import static dev.dmaplane.driver.gpu.model.GpuRegs.ENGINE_COUNT;
import static dev.dmaplane.driver.gpu.model.GpuRegs.ENGINE_NAMES;

/**
 * The GPU under the accelerator core ({@code struct drm_driver} of amdgpu, reduced to the SPI): all its VRAM with
 * the page tables' range reserved (so the core's offsets are the GPU's), the three engines, a {@link GpuAddressSpace} per VM, moves and clears on
 * the kernel mover. A thin adapter: every call goes to the driver's own classes.
 */
final class GpuAccelProvider implements AccelProvider {
    private final PciFunction fn;
    private final VramInfo vram;
    private final GpuVmManager vms;
    private final KernelMover mover;
    private final GpuEngine[] engines;

    GpuAccelProvider(PciFunction fn, VramInfo vram, GpuVmManager vms, KernelMover mover, GpuEngine[] engines) {
        this.fn = fn;
        this.vram = vram;
        this.vms = vms;
        this.mover = mover;
        this.engines = engines.clone();
    }

    /** A core VM: the driver's address space behind the SPI's page-table operations. */
    record CoreVm(GpuAddressSpace space) implements GpuVmOps {
        @Override
        public void map(long va, List<GpuRun> runs, boolean writable) {
            space.map(va, runs, writable);
        }

        @Override
        public void unmap(long va, long length) {
            space.unmap(va, length);
        }

        @Override
        public void destroy() {
            space.destroy();
        }
    }

    /**
     * The hardware job of a core job: its commands as descriptors in the VM slot of the context's address space
     * ({@code amdgpu_job}'s VM id).
     */
    static GpuJob hardwareJob(dev.dmaplane.accel.spi.GpuJob job) {
        if (!(job.vm() instanceof CoreVm vm)) {
            throw new ErrnoException(Errno.EINVAL, job.name() + ": its VM " + job.vm() + " was not made by this driver");
        }
        return GpuJob.of(CoreJobs.translate(vm.space().slot(), job.commands()).toArray(GpuCommand[]::new));
    }

    @Override
    public String driverName() {
        return GpuDriver.NAME;
    }

    @Override
    public Device dmaDevice() {
        return fn;
    }

    @Override
    public VramInfo vram() {
        return vram;
    }

    @Override
    public List<EngineInfo> engines() {
        return IntStream.range(0, ENGINE_COUNT).mapToObj(e -> new EngineInfo(ENGINE_NAMES[e],
                e == ENGINE_COMPUTE ? EngineInfo.EngineClass.COMPUTE : EngineInfo.EngineClass.COPY)).toList();
    }

    @Override
    public GpuVmOps createVm(String name) {
        return new CoreVm(vms.create());
    }

    @Override
    public Fence move(BoMove move) {
        return mover.move(move.from(), move.to(), move.dependencies());
    }

    @Override
    public Fence clear(String bo, List<GpuRun> runs) {
        return mover.clear(runs);
    }

    @Override
    public Scheduler scheduler(int engine) {
        ErrnoException.check(engine >= 0 && engine < engines.length, Errno.EINVAL, "engine " + engine + " is not 0.."
                + (engines.length - 1));
        return engines[engine].scheduler();
    }

    @Override
    public void checkJob(int engine, List<Command> commands) {
        CoreJobs.check(engine, commands);
    }
}
