/**
 * The accelerator user API (DRM GEM and drivers/accel uAPI): {@link dev.dmaplane.accel.AccelCore} (one per machine:
 * devices {@code accel0}, ...), {@link dev.dmaplane.accel.AccelContext} (a {@code drm_file} on a
 * {@code UContext}: buffer-object handles, placement queries, CPU access through the mmap path, pinning, the GPU
 * VM's VM_BIND map and unmap, PRIME export and import of dma-bufs, fdinfo keys). Placement follows TTM: an object
 * prefers VRAM, the CPU-visible window
 * or host memory, falls back to the other allowed placements, and is evicted to host memory in LRU order under
 * pressure unless pinned; every move is a driver fence at {@code KERNEL} usage on the object's reservation.
 * <p>
 * Jobs ({@code amdgpu_cs.c}, {@code xe_exec.c} on drm_sched): a {@link dev.dmaplane.accel.Submission} of
 * {@link dev.dmaplane.accel.Command}s (copy, fill, launch, through the context's GPU virtual addresses) runs on
 * one of the device's engines after the implicit dependencies of the objects it uses, its explicit in-fences and
 * its sync-object points; its finished fence goes on the objects' reservations and into the sync objects it
 * signals. A job that faults ({@code EFAULT}) or hangs ({@code ETIME}) bans its context: later submissions are
 * {@code ECANCELED}; closing the context or unregistering the device cancels its queued jobs with
 * {@code ECANCELED}. Sync objects are per-context handles ({@code drm_syncobj}).
 * Errors are {@code ErrnoException}s with the kernel's errno; a refused call changes nothing.
 */
@Export
@Version("1.1.0")
package dev.dmaplane.accel;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
