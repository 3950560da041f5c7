/**
 * What an accelerator driver implements to put a device under the accelerator core ({@code struct drm_driver},
 * the {@code ttm_device_funcs} it needs, the page-table half of {@code drm_gpuvm_ops}).
 * <p>
 * <b>Registering.</b> A driver binds its PCI function, then calls {@code AccelCore.of(machine).register(provider)}
 * in probe and {@link dev.dmaplane.accel.spi.AccelDeviceHandle#unregister()} in remove; unregistering
 * disassociates every context, destroys every VM and frees every object once its fences signal (bounded).
 * <p>
 * <b>What the core owns</b>: buffer objects, their handles and limits, their placement (VRAM below the BAR's size
 * as the GPU's own p2pmem, VRAM beyond it as a second range of the same {@code genalloc} pool, host pages mapped
 * with the {@link dev.dmaplane.accel.spi.AccelProvider#dmaDevice() DMA device}'s DMA API), LRU eviction, pinning,
 * reservations, and the VA ranges of each context's GPU VM.
 * <p>
 * <b>What the driver does</b>: {@code move} and {@code clear} queue copy-engine work and return its fence at once
 * (never blocking on the dependencies they are given: the core calls them with its placement lock held); the
 * fence signals when the bytes are there, with an error set first if they are not. Addresses come as
 * {@link dev.dmaplane.accel.spi.GpuRun}s: a VRAM offset, or a DMA address the GPU reaches through its bus master
 * (so the IOMMU checks it) — the two apertures of a GPU address (bit 63). {@code GpuVmOps} writes page tables;
 * the core has checked every range and rewrites the entries of a moved object before it is used again
 * ({@code drm_gpuvm_validate}).
 * <p>
 * <b>Jobs</b>: the driver owns one {@link dev.dmaplane.accel.sched.Scheduler} per engine with its backend
 * ({@link dev.dmaplane.accel.spi.AccelProvider#scheduler}); the core makes one entity per context and engine at
 * the context's priority ({@code KERNEL} stays the driver's) and pushes jobs whose payload is a
 * {@link dev.dmaplane.accel.spi.GpuJob}: the context's {@code GpuVmOps} as the driver made it, and commands the
 * driver accepted in {@link dev.dmaplane.accel.spi.AccelProvider#checkJob}. The backend runs them through that
 * VM's page tables and signals the hardware fence, with {@code EFAULT} for a GPU page fault (the core then bans
 * the context); a timeout is the driver's engine reset ({@code Scheduler.stop}, {@code start}), the hung job
 * ending with {@code ETIME}. In remove, the driver finishes its schedulers first (every job not done ends
 * {@code ECANCELED}, as amdgpu force-completes its fences after {@code drm_dev_unplug}), then unregisters; the core
 * then awaits (bounded) what is left of its contexts' jobs and revokes exported objects.
 * <p>
 * <b>Locks</b>: the core takes its placement lock before any reservation lock and never waits for it while
 * holding one; fence callbacks the driver's signalling runs take neither.
 * <p>
 * {@code TestAccelProvider} in this module's tests is a complete provider of under 200 lines, on the hardware model {@code TestGpu}.
 */
@Export
@Version("1.1.0")
package dev.dmaplane.accel.spi;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
