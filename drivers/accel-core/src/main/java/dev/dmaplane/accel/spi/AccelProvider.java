package dev.dmaplane.accel.spi;

import dev.dmaplane.accel.Command;
import dev.dmaplane.accel.sched.Scheduler;
import dev.dmaplane.device.Device;
import dev.dmaplane.fence.Fence;
import org.osgi.annotation.versioning.ConsumerType;

import java.util.List;

/**
 * What an accelerator driver gives the core for one device ({@code struct drm_driver} with the
 * {@code ttm_device_funcs} and {@code drm_gpuvm_ops} it needs). The core owns buffer objects, their placement and
 * eviction, and the VA ranges of each context; the driver runs moves on its copy engine and writes page tables.
 * Calls may come from any thread; {@link #move} must not block on the fences it is given.
 * <p>
 * Jobs: the driver owns one {@link Scheduler} per engine with its {@code SchedBackend} (as a DRM driver owns its
 * {@code drm_gpu_scheduler}s and rings); the core creates the entities, one per context and engine, and pushes
 * jobs whose payload is a {@link GpuJob}. The driver finishes its schedulers ({@code Scheduler.fini}) after
 * unregistering, or before it when the hardware is gone, so the jobs on it are cancelled.
 */
@ConsumerType
public interface AccelProvider {
    /** The driver name ({@code drm_driver.name}, {@code drm-driver} in fdinfo). */
    String driverName();

    /** The device whose DMA API maps host pages for the GPU ({@code drm_device.dev}). */
    Device dmaDevice();

    /** The device's VRAM. */
    VramInfo vram();

    /** The engines, in the order their schedulers are created. */
    List<EngineInfo> engines();

    /** Creates the page tables of a new GPU VM ({@code drm_gpuvm_init} and the driver's root page directory). */
    GpuVmOps createVm(String name);

    /**
     * Queues a copy of {@code move.from()} to {@code move.to()} on the copy engine, after its dependencies
     * ({@code ttm_device_funcs.move} with {@code ttm_bo_move_accel_cleanup}). The returned fence signals when the
     * bytes are at the destination, with an error set first if the copy failed; the core frees the source only
     * then.
     */
    Fence move(BoMove move);

    /**
     * Queues a zero fill of {@code runs} (VRAM a new object got: {@code amdgpu_fill_buffer} for
     * {@code AMDGPU_GEM_CREATE_VRAM_CLEARED}), so no object sees another's old bytes; the fence as for {@link #move}.
     *
     * @param bo a name for traces
     */
    Fence clear(String bo, List<GpuRun> runs);

    /**
     * The scheduler of engine {@code engine} (an index into {@link #engines()}), the same one every time; its
     * backend's {@code runJob} receives jobs whose payload is a {@link GpuJob}.
     */
    Scheduler scheduler(int engine);

    /**
     * Checks a job's commands for engine {@code engine} at submission, before anything is locked or queued (the
     * driver's part of {@code amdgpu_cs_parser_init} / {@code xe_exec_ioctl}'s checks): {@code EINVAL} for a
     * command the engine cannot run, an unknown kernel or a wrong argument count.
     */
    void checkJob(int engine, List<Command> commands);
}
